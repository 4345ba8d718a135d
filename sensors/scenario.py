"""Scenarios for ``ews simulate``, and the pure generator of what simulated gateways send.

``scenario_samples(scenario, start, seed)`` yields, in send order, ``(station_id, payload,
sim_time)`` where ``payload`` is a sample dict, a list of sample dicts (a backlog batch after an
outage), raw ``bytes`` (a garbage payload) or a ``Status`` (the gateway went on- or offline).
No broker, no clock: testable on its own. Scenario files are JSON in ``sensors/scenarios/``
(format in docs/field.md); rainfall drives the rivers through ``sensors.runoff``.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

from sensors import topics
from sensors.runoff import load_network

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
CATCHMENTS_FILE = Path(__file__).resolve().parent / "catchments.json"
SEED_FILE = Path(__file__).resolve().parents[1] / "config" / "seed" / "luwu-timur.json"
RULES_FILE = Path(__file__).resolve().parents[1] / "config" / "rules" / "defaults.json"

EVENT_TYPES = ("outage", "silent", "battery_drain", "counter_reset", "spike", "stuck", "garbage")
GARBAGE_KINDS = ("malformed_json", "not_an_object", "unknown_metric", "nan_string", "nan_literal", "future_ts")


class ScenarioError(ValueError):
    """A scenario file is missing or wrong; the message says where."""


@dataclasses.dataclass(frozen=True)
class Status:
    """A gateway's connection changed: published retained on its status topic."""

    state: str  # "online" or "offline"


class Emission(NamedTuple):
    """One thing a simulated gateway sends at simulated time ``sim_time`` (UTC)."""

    station_id: str
    payload: Any  # dict | list[dict] | bytes | Status
    sim_time: datetime


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- generator


def rain_intensity(points: list[list[float]], hour: float) -> float:
    """Rain intensity (mm/h) at ``hour``: linear between ``[hour, mm_per_h]`` points, 0 outside."""
    hours = [p[0] for p in points]
    if hour < hours[0] or hour > hours[-1]:
        return 0.0
    i = bisect.bisect_right(hours, hour)
    if i >= len(points):
        return float(points[-1][1])
    (h1, v1), (h2, v2) = points[i - 1], points[i]
    return float(v1) if h2 == h1 else float(v1 + (v2 - v1) * (hour - h1) / (h2 - h1))


def rfc3339(moment: datetime) -> str:
    """UTC time as RFC 3339 with a ``Z``, to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class _Station:
    """What one simulated gateway remembers between reports."""

    spec: Mapping[str, Any]
    kind: str  # "river", "rain_tips", "rainfall"
    interval_s: int
    next_report_s: int
    seq: int
    battery_v: float
    signal_base: float
    rain_mm: float = 0.0  # rain since the previous report (rainfall gauges)
    rain_total_mm: float = 0.0  # since the last counter reset (tipping buckets)
    tips_offset: int = 0
    backlog: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    silent: bool = False
    stuck: dict[str, float] = dataclasses.field(default_factory=dict)
    thresholds: dict[str, float] | None = None


def _events_for(events: list[Mapping[str, Any]], station_id: str, kind: str) -> list[Mapping[str, Any]]:
    return [e for e in events if e["station"] == station_id and e["type"] == kind]


def _within(event: Mapping[str, Any], hour: float) -> bool:
    return event.get("from_h", 0.0) <= hour < event.get("to_h", math.inf)


def scenario_samples(
    scenario: Mapping[str, Any],
    start: datetime,
    seed: int = 0,
    *,
    stations: list[Mapping[str, Any]] | None = None,
    catchments: Mapping[str, Any] | None = None,
    only: list[str] | None = None,
) -> Iterator[Emission]:
    """Everything the scenario's gateways send, in send order, for a scenario starting at ``start``.

    Deterministic for a given ``seed``. ``only`` restricts the output to some station ids
    (the rivers are still simulated as a whole, so a subset sees the same water).
    """
    stations = stations if stations is not None else load_seed_stations()
    catchments = catchments if catchments is not None else load_catchments()
    rng = random.Random(seed)
    step_s = int(scenario.get("step_s", 60))
    duration_s = int(round(scenario["duration_h"] * 3600))
    network = load_network(stations, catchments, step_s)
    for sid, quick in (scenario.get("initial_quick_flow_m3s") or {}).items():
        network.set_quick_flow(sid, quick)
    rain = scenario.get("rain") or {}
    gauge_cells = catchments.get("rain_gauges", {})
    events = list(scenario.get("events") or [])
    noise = {"water_level": 0.01, "signal": 3.0, "battery": 0.02, **(scenario.get("noise") or {})}
    fast_interval = int(scenario.get("fast_interval_s", 300))
    local_offset_h = _local_offset_hours(scenario)

    state: dict[str, _Station] = {}
    for spec in stations:
        metrics = spec.get("metrics", [])
        kind = "river" if "water_level" in metrics else ("rain_tips" if "rain_tips" in metrics else "rainfall")
        interval = int(spec.get("expected_interval_s") or scenario.get("interval_s", 600))
        interval = max(step_s, interval // step_s * step_s)
        state[spec["id"]] = _Station(
            spec=spec,
            kind=kind,
            interval_s=interval,
            next_report_s=step_s * rng.randrange(1, interval // step_s + 1),  # spread the stations
            seq=rng.randrange(1, 20000),
            battery_v=round(rng.uniform(12.5, 12.9), 2),
            signal_base=rng.uniform(-95, -70),
            tips_offset=rng.randrange(1000, 30000),
            thresholds=water_level_thresholds(spec) if kind == "river" else None,
        )
    wanted = set(only) if only else set(state)

    garbage = sorted((e for e in events if e["type"] == "garbage"), key=lambda e: e["at_h"])
    resets = {id(e): False for e in events if e["type"] == "counter_reset"}
    spikes_done: set[int] = set()

    for step in range(duration_s // step_s):
        t0, t1 = step * step_s, (step + 1) * step_s
        mid_h = (t0 + t1) / 2 / 3600
        rain_mm = {cell: rain_intensity(points, mid_h) * step_s / 3600 for cell, points in rain.items()}
        network.step(rain_mm)
        now = start + timedelta(seconds=t1)
        hour = t1 / 3600
        for sid, st in state.items():
            if st.kind != "river":
                cell_rain = rain_mm.get(gauge_cells.get(sid, ""), 0.0)
                st.rain_mm += cell_rain
                st.rain_total_mm += cell_rain
        for event in events:
            if event["type"] == "counter_reset" and not resets[id(event)] and hour >= event["at_h"]:
                resets[id(event)] = True
                st = state[event["station"]]
                st.rain_total_mm, st.tips_offset = 0.0, 0

        while garbage and garbage[0]["at_h"] <= hour:
            event = garbage.pop(0)
            if event["station"] in wanted:
                end = start + timedelta(seconds=duration_s)
                yield Emission(event["station"], _garbage(event, now, end, rng), now)

        for sid, st in state.items():
            # Silence: the station lost power; its gateway drops off the broker.
            silent_now = any(_within(e, hour) for e in _events_for(events, sid, "silent"))
            if silent_now != st.silent:
                st.silent = silent_now
                if sid in wanted:
                    yield Emission(sid, Status(topics.STATUS_OFFLINE if silent_now else topics.STATUS_ONLINE), now)
            if t1 < st.next_report_s:
                continue
            st.next_report_s = t1 + (fast_interval if _is_fast(st, network) else st.interval_s)
            if st.silent:
                continue
            sample = _sample(st, network, now, hour, rng, noise, events, spikes_done, local_offset_h)
            if sid not in wanted:
                continue
            in_outage = any(_within(e, hour) for e in _events_for(events, sid, "outage"))
            if in_outage:
                st.backlog.append(sample)  # stored in the logger, sent after reconnect
                continue
            if st.backlog:
                backlog, st.backlog = st.backlog + [sample], []
                for i in range(0, len(backlog), topics.MAX_SAMPLES_PER_PAYLOAD):
                    chunk = backlog[i:i + topics.MAX_SAMPLES_PER_PAYLOAD]
                    yield Emission(sid, chunk if len(chunk) > 1 else chunk[0], now)
                continue
            yield Emission(sid, sample, now)


def _local_offset_hours(scenario: Mapping[str, Any]) -> float:
    """Hour of the local day the scenario starts at (for the solar charging curve)."""
    local = scenario.get("local_start")
    if not local:
        return 6.0
    moment = datetime.fromisoformat(local)
    return moment.hour + moment.minute / 60


def _is_fast(st: _Station, network) -> bool:
    """River loggers report more often at or above Waspada (domain.md 6.1)."""
    if st.kind != "river" or st.spec["id"] not in network.catchments:
        return False
    return network.stage(st.spec["id"]) >= st.thresholds["waspada"]


def _sample(st: _Station, network, now: datetime, hour: float, rng: random.Random, noise, events, spikes_done,
            local_offset_h: float) -> dict[str, Any]:
    sid = st.spec["id"]
    st.seq += 1
    values: dict[str, Any] = {}
    if st.kind == "river":
        level = network.stage(sid) if sid in network.catchments else 1.0
        values["water_level"] = round(max(0.0, level + rng.gauss(0, noise["water_level"])), 3)
    elif st.kind == "rain_tips":
        mm_per_tip = float(st.spec.get("mm_per_tip") or 0.2)
        values["rain_tips"] = st.tips_offset + int(st.rain_total_mm / mm_per_tip + 1e-9)
    else:
        # Report whole 0.1 mm and carry the rest, so the reported sum equals the rain.
        reported = math.floor(st.rain_mm * 10 + 1e-9) / 10
        st.rain_mm -= reported
        values["rainfall"] = round(reported, 1)
    values["battery"] = round(_battery(st, hour, local_offset_h, events) + rng.gauss(0, noise["battery"]), 2)
    values["signal"] = int(round(st.signal_base + rng.gauss(0, noise["signal"])))
    for event in _events_for(events, sid, "stuck"):
        metric = event.get("metric", "water_level")
        if _within(event, hour) and metric in values:
            values[metric] = st.stuck.setdefault(metric, values[metric])
        elif not _within(event, hour):
            st.stuck.pop(metric, None)
    for event in _events_for(events, sid, "spike"):
        if id(event) not in spikes_done and hour >= event["at_h"]:
            spikes_done.add(id(event))
            values[event.get("metric", "water_level")] = event["value"]
    return {"ts": rfc3339(now), "seq": st.seq, "values": values}


def _battery(st: _Station, hour: float, local_offset_h: float, events) -> float:
    """A solar-charged 12 V battery: up in the day, slowly down at night; drained by events."""
    local_hour = (local_offset_h + hour) % 24
    sun = max(0.0, math.sin(math.pi * (local_hour - 6) / 12)) if 6 <= local_hour <= 18 else 0.0
    volts = st.battery_v + 0.6 * sun - 0.15
    for event in _events_for(events, st.spec["id"], "battery_drain"):
        start_h, end_h = event.get("from_h", 0.0), event.get("to_h", event.get("from_h", 0.0) + 1)
        if hour >= start_h:
            share = min(1.0, (hour - start_h) / max(end_h - start_h, 1e-9))
            volts = volts + (float(event["to_v"]) - volts) * share
    return volts


def _garbage(event: Mapping[str, Any], now: datetime, end: datetime, rng: random.Random) -> bytes:
    """A payload a broken gateway might send (docs/field.md lists the kinds and the expected rejection)."""
    ts = rfc3339(now)
    kind = event["kind"]
    if kind == "malformed_json":
        return ('{"ts": "%s", "values": {"water_level": 1.2' % ts).encode()
    if kind == "not_an_object":
        return b'"water_level=1.2"'
    if kind == "unknown_metric":  # the known metric in the same sample is kept
        return json.dumps({"ts": ts, "values": {"battery": 12.7, "temperature": 28.4}}).encode()
    if kind == "nan_string":
        return json.dumps({"ts": ts, "values": {"water_level": "NaN"}}).encode()
    if kind == "nan_literal":  # Python's json writes NaN, which strict JSON does not allow
        return ('{"ts": "%s", "values": {"water_level": NaN, "signal": -Infinity}}' % ts).encode()
    # future_ts: one hour after the scenario's end, so more than 5 minutes ahead of the wall clock whatever --speed
    return json.dumps({"ts": rfc3339(end + timedelta(hours=1)), "values": {"battery": 12.6}}).encode()


def sample_count(payload: Any) -> int:
    """How many samples a payload carries (garbage counts as one, a status as none)."""
    if isinstance(payload, list):
        return len(payload)
    if isinstance(payload, Status):
        return 0
    return 1


def encode_payload(payload: Any) -> bytes:
    """The bytes to publish for a sample, a batch or a raw garbage payload."""
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, list):
        return b"[" + b",".join(topics.encode_sample(s) for s in payload) + b"]"
    return topics.encode_sample(payload)
