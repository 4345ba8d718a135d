"""SMS texts: pure rendering of a template (from ``config/templates/*.toml``) with a context.

A template is a ``str.format`` string such as
``"BPBD LUTIM: AWAS banjir. TMA {where} {value}{trend} {time} {tz}. ... Darurat: 112"``.
``Templates`` holds the parsed files, one per language; ``render()`` fills a template and
makes the result GSM-7 (``alerts.gsm7.sanitise``). ``warning_context()`` turns a station and a
reading into the words the templates use, in the subscriber's language. No I/O except
``load_templates()``, which reads the TOML files it is pointed at.
"""

from __future__ import annotations

import dataclasses
import string
import tomllib
from collections.abc import Mapping
from datetime import datetime, tzinfo
from pathlib import Path

from alerts.errors import TemplateError
from alerts import gsm7
from alerts.model import GAUGE_ALERT_KINDS

DEFAULT_LANGUAGE = "id"
LANGUAGES = ("id", "en")
WARNING_LEVELS = ("waspada", "siaga", "awas")
PUBLIC_KINDS = GAUGE_ALERT_KINDS  # the kinds with warning, reminder and all-clear texts of a station's own gauge
OPERATIONAL_KINDS = ("offline", "battery", "siren", "sensor")
UPSTREAM = "upstream"  # banjir kiriman (spec section 11): residents warned of a wave from upstream, no reminders
# Alerts of an exercise use the same keys under this section: ``exercise.water_level.raised.awas``.
EXERCISE = "exercise"
# The texts of alerts, by kind (the exercise section has each of them too).
ALERT_KEYS = tuple(
    [f"{kind}.{event}.{level}" for kind in PUBLIC_KINDS for event in ("raised", "escalated") for level in WARNING_LEVELS]
    + [f"{kind}.{event}" for kind in PUBLIC_KINDS for event in ("reminder", "all_clear")]
    + [f"{kind}.{event}" for kind in OPERATIONAL_KINDS for event in ("raised", "cleared")]
    + [f"{UPSTREAM}.{event}.{level}" for event in ("raised", "escalated") for level in WARNING_LEVELS]
    + [f"{UPSTREAM}.all_clear"]
    + ["sensor.doubtful"]  # sensor.raised is a stuck sensor; sensor.doubtful a held wild value (spec 17)
)
# A staff warning of a station in a maintenance window (spec section 10) has texts of its own, which
# say that residents were not told: ``maintenance.water_level.raised.awas``. Staff hear only of SIAGA and AWAS.
MAINTENANCE = "maintenance"
MAINTENANCE_LEVELS = ("siaga", "awas")
MAINTENANCE_KEYS = tuple(
    [f"{MAINTENANCE}.{kind}.{event}.{level}" for kind in PUBLIC_KINDS for event in ("raised", "escalated")
     for level in MAINTENANCE_LEVELS]
    + [f"{MAINTENANCE}.{kind}.reminder" for kind in PUBLIC_KINDS]
)
# Every template key a language file must have (dotted paths into the TOML document).
REQUIRED_KEYS = tuple(
    list(ALERT_KEYS) + [f"{EXERCISE}.{key}" for key in ALERT_KEYS] + list(MAINTENANCE_KEYS)
    + ["broadcast.wrapper", "offline.was"]
    + [f"reply.{name}" for name in ("opted_out", "opted_in", "registered", "register_unknown", "not_registered",
                                    "info", "info_none", "info_line", "unknown")]
    + [f"levels.{level}" for level in ("normal",) + WARNING_LEVELS]
)
MAX_TREND_CM = 999  # the widest rate a trend text shows (cm/h)
# Time-zone abbreviations people in Indonesia use (the tz database has only "+08").
_TZ_WORDS = {"Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB", "Asia/Jayapura": "WIT"}


@dataclasses.dataclass(frozen=True)
class Templates:
    """The parsed template documents, by language code."""

    documents: Mapping[str, Mapping]

    def languages(self) -> tuple[str, ...]:
        """The language codes there are templates for."""
        return tuple(self.documents)

    def get(self, key: str, language: str = DEFAULT_LANGUAGE) -> str:
        """The template at dotted ``key`` in ``language`` (falling back to Bahasa Indonesia)."""
        for lang in (language, DEFAULT_LANGUAGE):
            value = _lookup(self.documents.get(lang, {}), key)
            if isinstance(value, str):
                return value
        raise TemplateError(f"no template {key!r} for language {language!r}")

    def has(self, key: str, language: str = DEFAULT_LANGUAGE) -> bool:
        """True when ``key`` exists in ``language`` or in the default language."""
        try:
            self.get(key, language)
        except TemplateError:
            return False
        return True


def _lookup(document: Mapping, key: str):
    node = document
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def parse_templates(texts: Mapping[str, str]) -> Templates:
    """Parse TOML texts by language code; check that every required key is present."""
    documents = {}
    for language, text in texts.items():
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"templates for {language!r}: {exc}") from None
        missing = [key for key in REQUIRED_KEYS if not isinstance(_lookup(document, key), str)]
        if missing:
            raise TemplateError(f"templates for {language!r} lack {', '.join(missing)}")
        documents[language] = document
    if DEFAULT_LANGUAGE not in documents:
        raise TemplateError(f"there are no templates for the default language {DEFAULT_LANGUAGE!r}")
    return Templates(documents)


def load_templates(directory: str | Path) -> Templates:
    """Read ``<language>.toml`` files from ``directory``."""
    files = sorted(Path(directory).glob("*.toml"))
    return parse_templates({f.stem: f.read_text(encoding="utf-8") for f in files})


class _Context(dict):
    def __missing__(self, key):
        raise TemplateError(f"unknown placeholder {{{key}}}")


def fill(template: str, context: Mapping) -> str:
    """``template`` with its ``{placeholders}`` filled from ``context``, made GSM-7."""
    try:
        text = string.Formatter().vformat(template, (), _Context(context))
    except (IndexError, ValueError) as exc:
        raise TemplateError(f"bad template {template!r}: {exc}") from None
    return gsm7.sanitise(text.strip())


def render(templates: Templates, key: str, language: str, context: Mapping) -> str:
    """The message ``key`` in ``language`` filled with ``context`` (GSM-7 only)."""
    return fill(templates.get(key, language), context)


# --- the words of a warning -------------------------------------------------------------------


def tz_word(zone: tzinfo, when: datetime) -> str:
    """``WITA`` for Asia/Makassar and the like; otherwise the zone's own abbreviation."""
    key = getattr(zone, "key", None)
    return _TZ_WORDS.get(key) or when.astimezone(zone).tzname() or "UTC"


def number(value: float, decimals: int, decimal_mark: str = ".") -> str:
    """``value`` with at most ``decimals`` decimals, trailing zeros dropped (3.20 -> 3.2)."""
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.replace(".", decimal_mark)


def river_short(river: str | None) -> str:
    """``Sungai Kalaena`` -> ``S.Kalaena`` (SMS space is scarce)."""
    if not river:
        return ""
    river = river.strip()
    for prefix in ("Sungai ", "sungai ", "S. ", "S."):
        if river.startswith(prefix):
            return "S." + river[len(prefix):].strip()
    return river


def station_short(name: str) -> str:
    """``Pos TMA Kalaena Wotu`` -> ``Kalaena Wotu``: the station's name without its kind."""
    name = (name or "").strip()
    for prefix in ("Pos TMA ", "Pos Hujan ", "Pos Duga Air ", "Pos ", "AWLR ", "ARR "):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):].strip()
    return name


def where(station: Mapping) -> str:
    """River and place in few characters: ``S.Kalaena Wotu`` (not ``S.Kalaena Kalaena Wotu``); ``sms_name`` when set."""
    if station.get("sms_name"):
        return str(station["sms_name"])
    short = station_short(station.get("name") or station.get("id") or "")
    river = river_short(station.get("river"))
    if not river:
        return short
    bare = river[2:] if river.startswith("S.") else river
    if short.lower().startswith(bare.lower()):
        return f"S.{short}" if river.startswith("S.") else short
    return f"{river} {short}"


def area_name(area: Mapping) -> str:
    """``Laskap`` for a desa, ``Kec. Malili`` for a whole kecamatan."""
    if area.get("desa"):
        return str(area["desa"])
    return f"Kec. {area.get('kecamatan', '')}"


def level_word(templates: Templates, language: str, level: str) -> str:
    """The level as people read it in ``language`` (``AWAS``; ``AWAS (danger)``)."""
    return templates.get(f"levels.{level}", language)


def _value_text(templates: Templates, language: str, metric: str, value, window: str | None) -> str:
    mark = str(_lookup(templates.documents.get(language, {}), "format.decimal") or ".")
    if value is None:
        return "-"
    value = float(value)
    if metric == "water_level":
        return f"{number(value, 2, mark)} m"
    if metric == "rainfall":
        window = window or "1h"
        unit = templates.get(f"units.rain_{window}", language) if templates.has(f"units.rain_{window}", language) else window
        return f"{number(value, 0, mark)} mm/{unit}"
    if metric == "battery":
        return f"{number(value, 1, mark)} V"
    if metric == "signal":
        return f"{number(value, 0, mark)} dBm"
    return number(value, 2, mark)


def trend_text(templates: Templates, language: str, metric: str, rate_per_hour: float | None) -> str:
    """The trend words, e.g. `` (naik 40cm/jam)``; empty when unknown.

    ``rate_per_hour`` is the change of the value per hour in the metric's unit (m/h for a
    water level, mm/h change of the hourly sum for rain).
    """
    if rate_per_hour is None or metric not in PUBLIC_KINDS:
        return ""
    if metric == "water_level":
        # More than 10 m/h is a gauge fault, not a river: the text never shows more than 999 cm/h.
        cm = min(round(abs(rate_per_hour) * 100), MAX_TREND_CM)
        direction = "steady" if cm < 5 else ("rising" if rate_per_hour > 0 else "falling")
        return templates.get(f"trend.water_level_{direction}", language).replace("{rate}", str(cm))
    direction = "steady" if abs(rate_per_hour) < 1 else ("rising" if rate_per_hour > 0 else "falling")
    return templates.get(f"trend.rainfall_{direction}", language)


def warning_context(
    templates: Templates,
    language: str,
    *,
    station: Mapping,
    level: str,
    metric: str,
    value,
    at: datetime,
    zone: tzinfo,
    rate_per_hour: float | None = None,
    window: str | None = None,
    siren: str | None = None,
    problem: str | None = None,
    was: str | None = None,
) -> dict:
    """Everything a template may name, for one station, level and reading, in ``language``.

    ``siren`` and ``problem`` (``silent`` or ``error``) fill a ``siren`` alert's text; ``was``
    (a warning level) the ``offline`` text's ``{was}``: the level the station fell silent at.
    """
    local = at.astimezone(zone)
    time_format = str(_lookup(templates.documents.get(language, {}), "format.time") or "%H:%M")
    areas = station.get("areas") or []
    return {
        "level": level_word(templates, language, level),
        # sms_name, when set, is the whole place phrase (spec section 9): for {where} and {station}.
        "station": station.get("sms_name") or station_short(station.get("name") or station.get("id") or ""),
        "station_id": station.get("id") or "",
        "river": river_short(station.get("river")) or station_short(station.get("name") or ""),
        "where": where(station),
        "kecamatan": station.get("kecamatan") or "",
        "desa": station.get("desa") or station.get("kecamatan") or "",
        "areas": ", ".join(area_name(a) for a in areas[:3]),
        "value": _value_text(templates, language, metric, value, window),
        "trend": trend_text(templates, language, metric, rate_per_hour),
        "time": local.strftime(time_format),
        "date": local.strftime("%d/%m"),
        "tz": tz_word(zone, at),
        "siren": siren or "",
        "problem": _problem_text(templates, language, problem),
        "was": _was_text(templates, language, was),
    }


def _was_text(templates: Templates, language: str, level: str | None) -> str:
    """`` Terakhir AWAS.``: the level a station was at when it fell silent (empty below WASPADA)."""
    if level not in WARNING_LEVELS:
        return ""
    return " " + fill(templates.get("offline.was", language), {"level": level_word(templates, language, level)})


def _problem_text(templates: Templates, language: str, problem: str | None) -> str:
    """The words of a siren's problem (``[siren] silent`` / ``error``), the key itself when missing."""
    if not problem:
        return ""
    key = f"siren.{problem}"
    return templates.get(key, language) if templates.has(key, language) else problem.upper()
# --- the words of a wave from upstream (spec section 11) ---------------------------------------


UPSTREAM_PLACE_MAX = 16  # a wave's text names two places: short ones keep it in one segment


def upstream_place(station: Mapping) -> str:
    """A station's place as a wave's text names it (at most 16 characters): the first of ``sms_name``,
    its kecamatan, its short name that fits, else the first cut at a word."""
    names = [str(n).strip() for n in (station.get("sms_name"), station.get("kecamatan"),
                                      station_short(station.get("name") or ""), station.get("id")) if n]
    for name in names:
        if 0 < len(name) <= UPSTREAM_PLACE_MAX:
            return name
    first = names[0] if names else ""
    cut = first[:UPSTREAM_PLACE_MAX + 1].rsplit(" ", 1)[0] if " " in first[:UPSTREAM_PLACE_MAX + 1] else ""
    return cut or first[:UPSTREAM_PLACE_MAX]


def upstream_context(templates: Templates, language: str, *, station: Mapping, level: str, reading: Mapping,
                     at: datetime, zone: tzinfo) -> dict:
    """The words of an upstream alert's text: the upstream place, level and reading, the arrival here.

    ``reading`` is the upstream event's (``service.upstream.event_reading``): the source reading
    with ``source_place``, ``source_level`` and ``eta``; ``at`` is the time the text names (the
    upstream measurement, or the all-clear's).
    """
    time_format = str(_lookup(templates.documents.get(language, {}), "format.time") or "%H:%M")
    eta_text = reading.get("eta")
    eta = datetime.fromisoformat(str(eta_text).replace("Z", "+00:00")) if eta_text else at
    context = warning_context(templates, language, station=station, level=level, metric="water_level",
                              value=reading.get("value"), at=at, zone=zone)
    context.update(source=str(reading.get("source_place") or reading.get("source_station_id") or ""),
                   place=upstream_place(station), eta=eta.astimezone(zone).strftime(time_format),
                   trend="")
    return context
