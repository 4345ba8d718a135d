"""Scenario files for ``ews simulate``: where they live, how they are read and what makes one valid.

Scenario files are JSON in ``sensors/scenarios/`` (format in docs/field.md); the stations
come from the bundled seed, the rivers from ``sensors/catchments.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alerts.errors import ScenarioError

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
CATCHMENTS_FILE = Path(__file__).resolve().parent / "catchments.json"
SEED_FILE = Path(__file__).resolve().parents[1] / "config" / "seed" / "luwu-timur.json"
RULES_FILE = Path(__file__).resolve().parents[1] / "config" / "rules" / "defaults.json"

EVENT_TYPES = ("outage", "silent", "battery_drain", "counter_reset", "spike", "stuck", "garbage")
GARBAGE_KINDS = ("malformed_json", "not_an_object", "unknown_metric", "nan_string", "nan_literal", "future_ts")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"no file {path}") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path} is not valid JSON: {exc}") from None


def load_seed_stations(path: Path = SEED_FILE) -> list[dict[str, Any]]:
    """The bundled Luwu Timur stations (``config/seed/luwu-timur.json``)."""
    return _read_json(path)["stations"]


def load_catchments(path: Path = CATCHMENTS_FILE) -> dict[str, Any]:
    """The catchment model the rivers are simulated with (``sensors/catchments.json``)."""
    return _read_json(path)


def list_scenarios() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json") if not p.stem.startswith("_"))


def load_scenario(name_or_path: str) -> dict[str, Any]:
    """A bundled scenario by name, or a scenario file by path; validated."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.exists()):
        path = SCENARIO_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ScenarioError(f"unknown scenario {name_or_path!r}; bundled: {', '.join(list_scenarios())}")
    scenario = _read_json(path)
    validate_scenario(scenario, load_seed_stations(), load_catchments())
    return scenario


def validate_scenario(scenario: Mapping[str, Any], stations: list[Mapping[str, Any]], catchments: Mapping[str, Any]) -> None:
    """Raise ScenarioError on the first problem in a scenario."""
    name = scenario.get("name", "?")
    ids = {s["id"] for s in stations}
    if not isinstance(scenario.get("duration_h"), (int, float)) or not 0 < scenario["duration_h"] <= 6 * 24:
        raise ScenarioError(f"scenario {name}: duration_h must be a number of hours from 0 to 144 (7 days)")
    for cell, points in (scenario.get("rain") or {}).items():
        if cell not in catchments["cells"]:
            raise ScenarioError(f"scenario {name}: unknown rain cell {cell!r}; known: {', '.join(catchments['cells'])}")
        if not points or any(len(p) != 2 or p[1] < 0 for p in points):
            raise ScenarioError(f"scenario {name}: rain.{cell} must be a list of [hour, mm_per_h >= 0] points")
    for i, event in enumerate(scenario.get("events") or []):
        if event.get("type") not in EVENT_TYPES:
            raise ScenarioError(f"scenario {name}: events[{i}] type must be one of {', '.join(EVENT_TYPES)}")
        if event.get("station") not in ids:
            raise ScenarioError(f"scenario {name}: events[{i}] names unknown station {event.get('station')!r}")
        if event["type"] == "garbage" and event.get("kind") not in GARBAGE_KINDS:
            raise ScenarioError(f"scenario {name}: events[{i}] kind must be one of {', '.join(GARBAGE_KINDS)}")


def water_level_thresholds(station: Mapping[str, Any]) -> dict[str, float]:
    """The station's water-level marks from the seed (defaults when it has none)."""
    rules = (station.get("rules") or {}).get("water_level")
    if not rules:
        rules = _read_json(RULES_FILE)["water_level"]
    return {level: float(rules[level]) for level in ("waspada", "siaga", "awas")}
