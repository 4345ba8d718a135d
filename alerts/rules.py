"""The thresholds of one station (spec section 3): parsing, validation and the canonical document.

A rules document is what ``PUT /stations/{id}/rules`` takes and ``GET`` returns. The
canonical form (``rules_to_doc``) names every known key and writes ``null`` where a
threshold or section is switched off; it is what a station stores (see
``alerts/station_rules.py`` for replacing and patching). ``merge_rules`` (JSON Merge Patch,
RFC 7386: ``null`` deletes a key) is how the bundled seed and the benchmark write a station
as overrides of the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from alerts.errors import RulesError
from alerts.levels import WARNING_LEVELS, Level

# Rolling rainfall windows we know, and their length in seconds.
RAIN_WINDOWS = {"1h": 3600, "3h": 3 * 3600, "24h": 24 * 3600}

# Fallbacks for keys a document leaves out; the documented defaults are those of
# config/rules/defaults.json, which ``complete_rules`` fills in before parsing.
DEFAULT_STALE_AFTER_S = 1800
DEFAULT_REPEAT_AWAS_S = 3600
DEFAULT_RAIN_CLEAR_HOLD_S = 1800

TOP_LEVEL_KEYS = ("water_level", "rainfall", "battery", "quality", "stale_after_s", "notify_from", "repeat_awas_s",
                  "all_clear", "upstream_from")
QUALITY_KEYS = ("max_step_per_min", "flatline_s", "flatline_tolerance")
# Quality checks a station may switch off one by one with null (spec section 17).
QUALITY_NULLABLE = ("max_step_per_min", "flatline_s")
WATER_LEVEL_KEYS = ("waspada", "siaga", "awas", "clear_margin", "hold_s", "clear_hold_s", "rise_rate")
LEVEL_KEYS = tuple(level.label for level in WARNING_LEVELS)


@dataclasses.dataclass(frozen=True)
class RiseRateRule:
    """Rising faster than ``per_hour`` (m/h) raises at least ``level``."""

    per_hour: float
    level: Level


@dataclasses.dataclass(frozen=True)
class WaterLevelRule:
    """River-stage thresholds (m) with hysteresis and hold times (s)."""

    waspada: float | None = None
    siaga: float | None = None
    awas: float | None = None
    clear_margin: float = 0.0
    hold_s: float = 0.0
    clear_hold_s: float = 0.0
    rise_rate: RiseRateRule | None = None

    def threshold(self, level: Level) -> float | None:
        """The value at which ``level`` is entered, or None when that level is not used."""
        return getattr(self, level.label)


@dataclasses.dataclass(frozen=True)
class RainWindowRule:
    """Thresholds (mm) for the rolling rainfall sum over one window."""

    name: str
    seconds: int
    waspada: float | None = None
    siaga: float | None = None
    awas: float | None = None

    def threshold(self, level: Level) -> float | None:
        """The sum at which ``level`` is entered, or None when that level is not used."""
        return getattr(self, level.label)


@dataclasses.dataclass(frozen=True)
class RainfallRule:
    """Rolling-sum rainfall thresholds; a lower level needs ``clear_hold_s`` of lower sums."""

    windows: tuple[RainWindowRule, ...] = ()
    clear_hold_s: float = DEFAULT_RAIN_CLEAR_HOLD_S

    def window(self, name: str) -> RainWindowRule | None:
        """The rule of window ``name`` (``1h``, ``3h``, ``24h``), if set."""
        return next((w for w in self.windows if w.name == name), None)


@dataclasses.dataclass(frozen=True)
class BatteryRule:
    """Supply voltage below ``low`` raises a battery alert; it clears at ``low + clear_margin``."""

    low: float
    clear_margin: float = 0.0


@dataclasses.dataclass(frozen=True)
class QualityRule:
    """Data-quality checks of water levels before judgment (spec section 17); None switches one off.

    ``max_step_per_min`` (m per minute): a larger step from the last accepted sample makes a
    sample doubtful. ``flatline_s``: a level within ``flatline_tolerance`` (m) for that long
    of measurement time is a stuck sensor.
    """

    max_step_per_min: float | None = None
    flatline_s: float | None = None
    flatline_tolerance: float = 0.0


@dataclasses.dataclass(frozen=True)
class Rules:
    """The effective rules of one station."""

    water_level: WaterLevelRule | None = None
    rainfall: RainfallRule | None = None
    battery: BatteryRule | None = None
    quality: QualityRule | None = None  # None: no quality checks (a document without the section)
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    notify_from: Level = Level.WASPADA
    repeat_awas_s: float = DEFAULT_REPEAT_AWAS_S
    all_clear: bool = True
    upstream_from: Level = Level.SIAGA  # a water-level alert from this level warns downstream (spec section 11)


# --- validation helpers -------------------------------------------------------------


class _Collector:
    """Gathers every problem of a document instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append((field, message))

    def number(self, doc: Mapping, key: str, path: str, *, minimum: float | None = None,
               positive: bool = False, default: Any = None) -> Any:
        """Read an optional finite number; record an error and return ``default`` if bad."""
        value = doc.get(key)
        field = f"{path}.{key}" if path else key
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.add(field, "must be a number")
            return default
        if positive and value <= 0:
            self.add(field, "must be greater than 0")
            return default
        if minimum is not None and value < minimum:
            self.add(field, f"must be at least {minimum:g}")
            return default
        return float(value)

    def section(self, doc: Mapping, key: str, path: str) -> Mapping | None:
        """Read an optional object; record an error if it is something else."""
        value = doc.get(key)
        field = f"{path}.{key}" if path else key
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(field, "must be an object")
            return None
        return value

    def unknown_keys(self, doc: Mapping, known: tuple[str, ...], path: str) -> None:
        for key in doc:
            if key not in known:
                field = f"{path}.{key}" if path else str(key)
                self.add(field, f"unknown key; use {', '.join(known)}")

    def level(self, doc: Mapping, key: str, path: str, default: Level) -> Level:
        """Read an optional warning-level name (waspada, siaga or awas)."""
        value = doc.get(key)
        field = f"{path}.{key}" if path else key
        if value is None:
            return default
        if not isinstance(value, str) or value not in LEVEL_KEYS:
            self.add(field, f"must be one of {', '.join(LEVEL_KEYS)}")
            return default
        return Level.parse(value)

    def ascending(self, thresholds: dict[str, float | None], path: str) -> None:
        """Thresholds that are set must rise with the level: waspada < siaga < awas."""
        previous: tuple[str, float] | None = None
        for name in LEVEL_KEYS:
            value = thresholds.get(name)
            if value is None:
                continue
            if previous is not None and not value > previous[1]:
                self.add(f"{path}.{name}", f"must be greater than {previous[0]} ({previous[1]:g})")
            previous = (name, value)


def _parse_water_level(c: _Collector, doc: Mapping) -> WaterLevelRule:
    path = "water_level"
    c.unknown_keys(doc, WATER_LEVEL_KEYS, path)
    thresholds = {name: c.number(doc, name, path) for name in LEVEL_KEYS}
    c.ascending(thresholds, path)
    rise = None
    rise_doc = c.section(doc, "rise_rate", path)
    if rise_doc is not None:
        rpath = f"{path}.rise_rate"
        c.unknown_keys(rise_doc, ("per_hour", "level"), rpath)
        per_hour = c.number(rise_doc, "per_hour", rpath, positive=True)
        if rise_doc.get("per_hour") is None:
            c.add(f"{rpath}.per_hour", "is required")
        level = c.level(rise_doc, "level", rpath, Level.WASPADA)
        if per_hour is not None:
            rise = RiseRateRule(per_hour=per_hour, level=level)
    return WaterLevelRule(
        **thresholds,
        clear_margin=c.number(doc, "clear_margin", path, minimum=0, default=0.0),
        hold_s=c.number(doc, "hold_s", path, minimum=0, default=0.0),
        clear_hold_s=c.number(doc, "clear_hold_s", path, minimum=0, default=0.0),
        rise_rate=rise,
    )


def _parse_rainfall(c: _Collector, doc: Mapping) -> RainfallRule:
    path = "rainfall"
    c.unknown_keys(doc, (*RAIN_WINDOWS, "clear_hold_s"), path)
    windows = []
    for name, seconds in RAIN_WINDOWS.items():
        wdoc = c.section(doc, name, path)
        if wdoc is None:
            continue
        wpath = f"{path}.{name}"
        c.unknown_keys(wdoc, LEVEL_KEYS, wpath)
        thresholds = {level: c.number(wdoc, level, wpath, positive=True) for level in LEVEL_KEYS}
        c.ascending(thresholds, wpath)
        windows.append(RainWindowRule(name=name, seconds=seconds, **thresholds))
    return RainfallRule(
        windows=tuple(windows),
        clear_hold_s=c.number(doc, "clear_hold_s", path, minimum=0, default=float(DEFAULT_RAIN_CLEAR_HOLD_S)),
    )


def _parse_battery(c: _Collector, doc: Mapping) -> BatteryRule | None:
    path = "battery"
    c.unknown_keys(doc, ("low", "clear_margin"), path)
    low = c.number(doc, "low", path)
    margin = c.number(doc, "clear_margin", path, minimum=0, default=0.0)
    if doc.get("low") is None:
        c.add(f"{path}.low", "is required")
    return BatteryRule(low=low, clear_margin=margin) if low is not None else None


def _parse_quality(c: _Collector, doc: Mapping) -> QualityRule:
    path = "quality"
    c.unknown_keys(doc, QUALITY_KEYS, path)
    return QualityRule(
        max_step_per_min=c.number(doc, "max_step_per_min", path, positive=True),
        flatline_s=c.number(doc, "flatline_s", path, positive=True),
        flatline_tolerance=c.number(doc, "flatline_tolerance", path, minimum=0, default=0.0),
    )


def parse_rules(doc: Any) -> Rules:
    """Validate a rules document and return ``Rules``; raise ``RulesError`` naming every bad field."""
    c = _Collector()
    if not isinstance(doc, Mapping):
        raise RulesError([("", "rules must be a JSON object")])
    c.unknown_keys(doc, TOP_LEVEL_KEYS, "")
    water = rain = battery = None
    if (section := c.section(doc, "water_level", "")) is not None:
        water = _parse_water_level(c, section)
    if (section := c.section(doc, "rainfall", "")) is not None:
        rain = _parse_rainfall(c, section)
    if (section := c.section(doc, "battery", "")) is not None:
        battery = _parse_battery(c, section)
    quality = None
    if (section := c.section(doc, "quality", "")) is not None:
        quality = _parse_quality(c, section)
    all_clear = doc.get("all_clear", True)
    if all_clear is None:
        all_clear = True
    if not isinstance(all_clear, bool):
        c.add("all_clear", "must be true or false")
        all_clear = True
    rules = Rules(
        water_level=water,
        rainfall=rain,
        battery=battery,
        quality=quality,
        stale_after_s=c.number(doc, "stale_after_s", "", positive=True, default=float(DEFAULT_STALE_AFTER_S)),
        notify_from=c.level(doc, "notify_from", "", Level.WASPADA),
        # 0 switches AWAS reminders off.
        repeat_awas_s=c.number(doc, "repeat_awas_s", "", minimum=0, default=float(DEFAULT_REPEAT_AWAS_S)),
        all_clear=all_clear,
        upstream_from=c.level(doc, "upstream_from", "", Level.SIAGA),
    )
    if c.errors:
        raise RulesError(c.errors)
    return rules


# --- documents ------------------------------------------------------------------------


def _num(value: float | None) -> int | float | None:
    """Write whole numbers as integers so documents read the way people typed them."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def rules_to_doc(rules: Rules) -> dict:
    """The canonical document of ``rules``: every key, ``null`` where something is switched off."""
    doc: dict[str, Any] = {}
    wl = rules.water_level
    if wl is None:
        doc["water_level"] = None
    else:
        doc["water_level"] = {
            **{name: _num(wl.threshold(Level.parse(name))) for name in LEVEL_KEYS},
            "clear_margin": _num(wl.clear_margin),
            "hold_s": _num(wl.hold_s),
            "clear_hold_s": _num(wl.clear_hold_s),
            "rise_rate": None if wl.rise_rate is None else {
                "per_hour": _num(wl.rise_rate.per_hour), "level": wl.rise_rate.level.label},
        }
    rain = rules.rainfall
    if rain is None:
        doc["rainfall"] = None
    else:
        section: dict[str, Any] = {}
        for name in RAIN_WINDOWS:
            window = rain.window(name)
            section[name] = None if window is None else {
                level: _num(window.threshold(Level.parse(level))) for level in LEVEL_KEYS}
        section["clear_hold_s"] = _num(rain.clear_hold_s)
        doc["rainfall"] = section
    doc["battery"] = None if rules.battery is None else {
        "low": _num(rules.battery.low), "clear_margin": _num(rules.battery.clear_margin)}
    q = rules.quality
    if q is not None:  # left out, a stored document takes the defaults' checks (each is switched off by null)
        doc["quality"] = {"max_step_per_min": _num(q.max_step_per_min), "flatline_s": _num(q.flatline_s),
                          "flatline_tolerance": _num(q.flatline_tolerance)}
    doc["stale_after_s"] = _num(rules.stale_after_s)
    doc["notify_from"] = rules.notify_from.label
    doc["repeat_awas_s"] = _num(rules.repeat_awas_s)
    doc["all_clear"] = rules.all_clear
    doc["upstream_from"] = rules.upstream_from.label
    return doc


def merge_rules(defaults: Mapping, overrides: Mapping | None) -> dict:
    """Deep-merge ``overrides`` over ``defaults`` (JSON Merge Patch: ``null`` removes a key).

    Keys of ``defaults`` starting with ``_`` are comments (e.g. ``_source``) and are dropped.
    """
    result = {k: _copy(v) for k, v in defaults.items() if not str(k).startswith("_")}
    for key, value in (overrides or {}).items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_rules(result[key], value)
        else:
            result[key] = _strip_nulls(value)
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _strip_nulls(value: Any) -> Any:
    """A new object from a patch carries no ``null`` members (RFC 7386)."""
    if isinstance(value, Mapping):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return _copy(value)
