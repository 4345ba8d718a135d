"""One segment for any station (spec section 9): the longest resident warning a station can be sent.

A resident warning must fit one 160-character GSM-7 segment whatever the reading. The texts
vary with the station (its place phrase: ``sms_name``, or the river and the name), the
language, the template, the value, the trend and the time; ``longest_resident_warning``
renders every resident template (the exercise ones too) in both languages with the widest of
each: values up to 99.99 m and 999.9 mm, every rainfall window, a rise or fall of 999 cm/h
(the most ``trend_text`` shows), and a time of the widest form. The API refuses a station
whose longest warning would not fit, the seed checks its stations, the template tests check
every seed station: one function for all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo

from alerts import gsm7, messages

SMS_NAME_MAX = 24
MAX_WATER_LEVEL = 99.99  # m: the widest value a gauge text can show ("99.99 m")
MAX_RAINFALL = 999.9  # mm: shown as "1000 mm/24jam"
# Rates giving the widest trend texts: 999 cm/h is the most trend_text shows.
WATER_RATES = (9.99, -9.99, 0.0)
RAIN_RATES = (99.0, -99.0, 0.0)
# 23:59 on a day with two-digit hours and minutes: with "%H:%M" every time is as wide.
WIDEST_TIME = datetime(2026, 12, 31, 15, 59, tzinfo=timezone.utc)


@dataclasses.dataclass(frozen=True)
class Rendering:
    """One rendered text and its length in GSM-7 septets."""

    septets: int
    key: str
    language: str
    text: str


# The metrics that make a station send each public kind of warning.
KIND_METRICS = {"water_level": ("water_level",), "rainfall": ("rainfall", "rain_tips"),
                messages.UPSTREAM: ("water_level",)}


def resident_warning_keys(metrics=None) -> tuple[str, ...]:
    """Every template a resident may be sent about a station measuring ``metrics`` (None: any): real and exercise."""
    kinds = [kind for kind in (*messages.PUBLIC_KINDS, messages.UPSTREAM)
             if metrics is None or set(KIND_METRICS[kind]) & set(metrics)]
    keys = [key for key in messages.ALERT_KEYS if key.split(".")[0] in kinds]
    return tuple(keys + [f"{messages.EXERCISE}.{key}" for key in keys])


def _level(key: str) -> str:
    parts = key.removeprefix(f"{messages.EXERCISE}.").split(".")
    if parts[-1] == "all_clear":
        return "normal"
    return parts[-1] if parts[1] in ("raised", "escalated") else "awas"


def _readings(kind: str):
    if kind in ("water_level", messages.UPSTREAM):
        return [(MAX_WATER_LEVEL, rate, None) for rate in WATER_RATES]
    return [(MAX_RAINFALL, rate, window) for rate in RAIN_RATES for window in ("1h", "3h", "24h")]


def longest_resident_warning(templates: messages.Templates, station: Mapping, zone: tzinfo) -> Rendering | None:
    """The longest resident warning ``station`` could be sent, over every template, language and reading.

    Only the kinds the station measures count (a rain gauge is never sent a flood warning); None
    when it measures neither.
    """
    longest: Rendering | None = None
    for language in templates.languages():
        for key in resident_warning_keys(station.get("metrics")):
            kind = key.removeprefix(f"{messages.EXERCISE}.").split(".")[0]
            for value, rate, window in _readings(kind):
                if kind == messages.UPSTREAM:
                    context = _upstream_context(templates, language, station, _level(key), value, zone)
                else:
                    context = messages.warning_context(templates, language, station=station, level=_level(key),
                                                       metric=kind, value=value, at=WIDEST_TIME, zone=zone,
                                                       rate_per_hour=rate, window=window)
                text = messages.render(templates, key, language, context)
                septets = gsm7.septets(text)
                if longest is None or septets > longest.septets:
                    longest = Rendering(septets, key, language, text)
    return longest


def _upstream_context(templates: messages.Templates, language: str, station: Mapping, level: str, value: float,
                      zone: tzinfo) -> dict:
    """A wave's words with ``station`` as both the upstream place and this one.

    If every station's text fits with its own place twice, a text naming any two of them fits:
    its length is at most that of the longer of the two.
    """
    reading = {"value": value, "source_place": messages.upstream_place(station),
               "eta": WIDEST_TIME.isoformat()}
    return messages.upstream_context(templates, language, station=station, level=level, reading=reading,
                                     at=WIDEST_TIME, zone=zone)


def segment_problem(templates: messages.Templates, station: Mapping, zone: tzinfo) -> str | None:
    """Why ``station``'s warnings would not fit one segment (naming the length), or None when they fit."""
    longest = longest_resident_warning(templates, station, zone)
    if longest is None or longest.septets <= gsm7.SEGMENT:
        return None
    return (f"its resident warnings would be up to {longest.septets} GSM-7 characters, more than one "
            f"{gsm7.SEGMENT}-character SMS ({longest.key}, {longest.language}: {longest.text!r}); "
            f"set sms_name (at most {SMS_NAME_MAX} characters) to a shorter place phrase")


def sms_name_problem(sms_name: str) -> str | None:
    """Why ``sms_name`` cannot be used as a place phrase, or None when it can."""
    if len(sms_name) > SMS_NAME_MAX:
        return f"must be at most {SMS_NAME_MAX} characters"
    if not sms_name.strip() or sms_name != sms_name.strip():
        return "must not be empty or start or end with a space"
    if any(ch not in gsm7.BASIC or ch in "\r\n" for ch in sms_name):
        return "must use plain GSM-7 characters (letters, digits, spaces, basic punctuation)"
    return None
