"""A station's whole rules document (spec section 9): what it stores, what PUT and PATCH do.

A station stores its *whole* rules document in canonical form (``rules.rules_to_doc``);
nothing is merged under it at run time, so a change of config/rules/defaults.json never
moves a station's thresholds. ``replace_rules`` validates a PUT body: thresholds come only
from the body, every other field left out takes its documented default (the value in
config/rules/defaults.json). ``patch_rules`` merges a PATCH into the current document,
which is then validated the same way. ``effective_rules`` reads a stored document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from copy import deepcopy
from typing import Any

from alerts.rules import (LEVEL_KEYS, QUALITY_NULLABLE, RAIN_WINDOWS, Rules, RulesError, merge_rules, parse_rules,
                          rules_to_doc)

# Blocks of thresholds, and the metrics that make a station need one. Thresholds never come
# from the defaults: a block must name them all, and a station measuring the metric must have
# the block (or null). Every other key left out takes its documented default.
METRIC_BLOCKS = {"water_level": ("water_level",), "rainfall": ("rainfall", "rain_tips")}


def complete_rules(doc: Any, defaults: Mapping, *, measured: Iterable[str] | None = None) -> dict:
    """The whole rules document of a station from ``doc`` (a PUT body, or a stored document).

    Each ``water_level`` block and rainfall window in ``doc`` must name ``waspada``, ``siaga``
    and ``awas`` (a number, or null for a level not used); with ``measured`` (the station's
    metrics) a block of a measured metric must be there (null switches it off), the block of
    a metric not measured is off when left out. Any other key left out, or a number set to
    null, takes its value from ``defaults``. Raise ``RulesError`` naming what is missing.
    """
    doc, errors = _complete(doc, defaults, measured)
    if errors:
        raise RulesError(errors)
    return doc


def _complete(doc: Any, defaults: Mapping, measured: Iterable[str] | None) -> tuple[dict, list[tuple[str, str]]]:
    if not isinstance(doc, Mapping):
        raise RulesError([("", "rules must be a JSON object")])
    base = {k: v for k, v in defaults.items() if not str(k).startswith("_")}
    errors: list[tuple[str, str]] = []
    if "quality" in doc and doc["quality"] is None:
        # `quality: null` is the section left out (the defaults' checks); each check is switched off by its own null.
        doc = {k: v for k, v in doc.items() if k != "quality"}
    out = _fill(doc, {k: v for k, v in base.items() if k not in METRIC_BLOCKS})
    if isinstance(doc.get("quality"), Mapping) and isinstance(out.get("quality"), Mapping):
        # In `quality` a null switches one check off (spec section 17), it takes no default.
        for key in QUALITY_NULLABLE:
            if key in doc["quality"] and doc["quality"][key] is None:
                out["quality"][key] = None
    measured = None if measured is None else set(measured)
    for block, metrics in METRIC_BLOCKS.items():
        if block not in doc:
            if measured is not None and measured & set(metrics):
                errors.append((block, "is required: this station measures it (give its thresholds, "
                                      "or null to switch these alerts off)"))
            out[block] = None
        elif isinstance(doc[block], Mapping):
            default = base.get(block) if isinstance(base.get(block), Mapping) else {}
            out[block] = (_complete_water_level if block == "water_level" else _complete_rainfall)(
                doc[block], default, errors)
    return out, errors


def _fill(doc: Mapping, defaults: Mapping) -> dict:
    """``doc`` with each key it leaves out (or a number it sets to null) taken from ``defaults``, deeply."""
    out = {k: deepcopy(v) for k, v in doc.items()}
    for key, default in defaults.items():
        value = out.get(key)
        if key not in out or (value is None and not isinstance(default, Mapping)):
            out[key] = deepcopy(default)
        elif isinstance(value, Mapping) and isinstance(default, Mapping):
            out[key] = _fill(value, default)
    return out


def _required_levels(block: Mapping, path: str, errors: list) -> None:
    for name in LEVEL_KEYS:
        if name not in block:
            errors.append((f"{path}.{name}", "is required: a number, or null for a level this station does not use"))


def _complete_water_level(block: Mapping, default: Mapping, errors: list) -> dict:
    _required_levels(block, "water_level", errors)
    return _fill(block, {k: v for k, v in default.items() if k not in LEVEL_KEYS})


def _complete_rainfall(block: Mapping, default: Mapping, errors: list) -> dict:
    for name in RAIN_WINDOWS:  # a window left out (or null) is not judged
        if isinstance(block.get(name), Mapping):
            _required_levels(block[name], f"rainfall.{name}", errors)
    out = _fill(block, {k: v for k, v in default.items() if k not in RAIN_WINDOWS})
    for name in RAIN_WINDOWS:
        out.setdefault(name, None)
    return out


def replace_rules(doc: Any, defaults: Mapping, *, measured: Iterable[str] | None = None) -> Rules:
    """Validate a whole rules document (``PUT``); raise ``RulesError`` naming every missing or bad field."""
    completed, errors = _complete(doc, defaults, measured)
    try:
        rules = parse_rules(completed)
    except RulesError as exc:
        errors += [e for e in exc.errors if e not in errors]
    if errors:
        raise RulesError(errors)
    return rules


def patch_rules(current: Mapping, patch: Mapping) -> dict:
    """``patch`` merged into ``current`` (RFC 7396), where ``null`` sets a member to null, not away.

    In a rules document ``null`` means switched off (a level not used, no rise rate, no
    battery alerts); removing a threshold instead would make the result incomplete.
    """
    out = {k: deepcopy(v) for k, v in current.items()}
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = patch_rules(out[key], value)
        else:
            out[key] = deepcopy(value)
    return out


def effective_rules(defaults: Mapping, station_rules: Mapping | None) -> Rules:
    """The rules a station runs with: its stored document, with keys a later release added taken from the defaults."""
    return parse_rules(complete_rules(station_rules or {}, defaults))


def rules_from_overrides(defaults: Mapping, overrides: Mapping | None) -> dict:
    """A whole canonical document written as overrides of the defaults (the bundled seed, the benchmark)."""
    return rules_to_doc(parse_rules(merge_rules(defaults, overrides or {})))
