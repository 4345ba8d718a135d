"""The words and number formats of the printable report, from ``config/report/{id,en}.toml``.

Bahasa Indonesia is the default and the fallback for any key English leaves out. Times are
shown in ``Settings.tz`` (WITA), durations in words people read aloud ("1 jam 5 mnt").
"""

from __future__ import annotations

import functools
import tomllib
from datetime import datetime, tzinfo

from alerts.messages import tz_word
from config import data_path
from service.reports import parse_ts

LANGUAGES = ("id", "en")
DECIMALS = {"m": 2, "mm": 1, "V": 1, "dBm": 0}


@functools.lru_cache(maxsize=len(LANGUAGES))
def _document(lang: str) -> dict:
    with data_path("report", f"{lang}.toml").open("rb") as handle:
        return tomllib.load(handle)


class Texts:
    """The texts of one language: ``texts("lead.late", delay="5 mnt")``."""

    def __init__(self, lang: str, zone: tzinfo) -> None:
        self.lang = lang if lang in LANGUAGES else "id"
        self.zone = zone
        self._docs = [_document(self.lang)] + ([_document("id")] if self.lang != "id" else [])

    def __call__(self, key: str, **values) -> str:
        section, _, name = key.partition(".")
        for doc in self._docs:
            text = doc.get(section, {}).get(name)
            if text is not None:
                return str(text).format(**values) if values else str(text)
        return key

    # -- numbers and times ------------------------------------------------------------------------

    def number(self, value: float | None, decimals: int) -> str:
        """``value`` with ``decimals`` decimals and this language's decimal mark."""
        if value is None:
            return "-"
        return f"{value:.{decimals}f}".replace(".", self("format.decimal"))

    def value(self, value: float | None, unit: str) -> str:
        """A measured value with its unit: ``3,18 m``."""
        if value is None:
            return "-"
        return f"{self.number(value, DECIMALS.get(unit, 2))} {unit}".strip()

    def tz(self, when: datetime | None = None) -> str:
        """``WITA`` (or the zone's own name)."""
        return tz_word(self.zone, when or datetime.now(self.zone))

    def time(self, stamp: str | datetime | None, fmt: str = "format.short", tz: bool = False) -> str:
        """A wire time shown locally (WITA), e.g. ``30/11 14:05:12``; ``tz`` appends the zone's word."""
        when = parse_ts(stamp) if isinstance(stamp, str) else stamp
        if when is None:
            return "-"
        text = when.astimezone(self.zone).strftime(self(fmt))
        return f"{text} {self.tz(when)}" if tz else text

    def duration(self, seconds: float | None, precise: bool = False) -> str:
        """``seconds`` (sign dropped) in words: ``45 dtk``, ``12 mnt``, ``1 jam 5 mnt``, ``2 hari 3 jam``.

        Seconds are kept under ten minutes, or under an hour when ``precise`` (the lead time figure).
        """
        if seconds is None:
            return "-"
        total = int(round(abs(seconds)))
        days, rest = divmod(total, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        if days:
            return self("duration.days", d=days, h=hours)
        if hours:
            return self("duration.hours", h=hours, m=minutes)
        if minutes:
            keep = secs and (minutes < 10 or precise)
            return self("duration.minutes_seconds", m=minutes, s=secs) if keep else self("duration.minutes", m=minutes)
        return self("duration.seconds", s=secs)

    def signed_duration(self, seconds: float | None, precise: bool = False) -> str:
        """A duration with its sign (a lead time after the fact is negative): ``-12 mnt``."""
        if seconds is None:
            return "-"
        return ("\u2212" if seconds < 0 else "") + self.duration(seconds, precise)

    def level(self, name: str | None) -> str:
        """The level's word (``Siaga``)."""
        return self(f"level.{name}") if name else "-"

    def state(self, name: str) -> str:
        """A delivery state's word (``diterima``); the state's own name when the texts do not know it."""
        text = self(f"states.{name}")
        return name if text == f"states.{name}" else text
