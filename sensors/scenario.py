"""Scenarios for ``ews simulate``, and the pure generator of what simulated gateways send.

``scenario_samples(scenario, start, seed)`` yields, in send order, ``(station_id, payload,
sim_time)`` where ``payload`` is a sample dict, a list of sample dicts (a backlog batch after an
outage), raw ``bytes`` (a garbage payload) or a ``Status`` (the gateway went on- or offline).
No broker, no clock: testable on its own. Scenario files (``sensors/scenarios/``) are read and
checked in ``sensors.scenario_files``; rainfall drives the rivers through ``sensors.runoff``.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from alerts import times
from sensors import topics
from sensors.runoff import load_network
from sensors.scenario_files import (  # noqa: F401  (re-exported: the generator's callers read scenarios too)
    CATCHMENTS_FILE,
    EVENT_TYPES,
    GARBAGE_KINDS,
    RULES_FILE,
    SCENARIO_DIR,
    SEED_FILE,
    ScenarioError,
    list_scenarios,
    load_catchments,
    load_scenario,
    load_seed_stations,
    validate_scenario,
    water_level_thresholds,
)


@dataclasses.dataclass(frozen=True)
class Status:
    """A gateway's connection changed: published retained on its status topic."""

    state: str  # "online" or "offline"


class Emission(NamedTuple):
    """One thing a simulated gateway sends at simulated time ``sim_time`` (UTC)."""

    station_id: str
    payload: Any  # dict | list[dict] | bytes | Status
    sim_time: datetime


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
    return times.rfc3339(moment, whole_seconds=True)


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
    run = _Run.prepare(scenario, start, random.Random(seed),
                       stations if stations is not None else load_seed_stations(),
                       catchments if catchments is not None else load_catchments(), only)
    for step in range(run.duration_s // run.step_s):
        t1 = (step + 1) * run.step_s
        run.rain_and_rivers(step * run.step_s, t1)
        now, hour = start + timedelta(seconds=t1), t1 / 3600
        run.reset_counters(hour)
        yield from run.garbage_due(now, hour)
        for sid, st in run.state.items():
            yield from run.report(sid, st, t1, now, hour)


@dataclasses.dataclass
class _Run:
    """One scenario being played: its settings, the rivers, each station's memory and the events still to come."""

    start: datetime
    rng: random.Random
    step_s: int
    duration_s: int
    network: Any
    rain: Mapping[str, Any]
    gauge_cells: Mapping[str, str]
    events: list[Mapping[str, Any]]
    noise: dict[str, float]
    fast_interval: int
    local_offset_h: float
    state: dict[str, _Station]
    wanted: set[str]
    garbage: list[Mapping[str, Any]]
    resets: dict[int, bool]
    spikes_done: set[int]

    @classmethod
    def prepare(cls, scenario: Mapping[str, Any], start: datetime, rng: random.Random,
                stations: list[Mapping[str, Any]], catchments: Mapping[str, Any], only: list[str] | None) -> _Run:
        """Read the scenario's settings, build the rivers and give every station its starting memory."""
        step_s = int(scenario.get("step_s", 60))
        network = load_network(stations, catchments, step_s)
        for sid, quick in (scenario.get("initial_quick_flow_m3s") or {}).items():
            network.set_quick_flow(sid, quick)
        events = list(scenario.get("events") or [])
        state = _initial_state(scenario, stations, step_s, rng)
        return cls(
            start=start, rng=rng, step_s=step_s, duration_s=int(round(scenario["duration_h"] * 3600)),
            network=network, rain=scenario.get("rain") or {}, gauge_cells=catchments.get("rain_gauges", {}),
            events=events,
            noise={"water_level": 0.01, "signal": 3.0, "battery": 0.02, **(scenario.get("noise") or {})},
            fast_interval=int(scenario.get("fast_interval_s", 300)), local_offset_h=_local_offset_hours(scenario),
            state=state, wanted=set(only) if only else set(state),
            garbage=sorted((e for e in events if e["type"] == "garbage"), key=lambda e: e["at_h"]),
            resets={id(e): False for e in events if e["type"] == "counter_reset"}, spikes_done=set(),
        )

    def rain_and_rivers(self, t0: int, t1: int) -> None:
        """Rain for one step falls on the catchments (rivers move) and into the rain gauges."""
        mid_h = (t0 + t1) / 2 / 3600
        rain_mm = {cell: rain_intensity(points, mid_h) * self.step_s / 3600 for cell, points in self.rain.items()}
        self.network.step(rain_mm)
        for sid, st in self.state.items():
            if st.kind != "river":
                cell_rain = rain_mm.get(self.gauge_cells.get(sid, ""), 0.0)
                st.rain_mm += cell_rain
                st.rain_total_mm += cell_rain

    def reset_counters(self, hour: float) -> None:
        """Tipping-bucket counters whose reset event has come start again from zero."""
        for event in self.events:
            if event["type"] == "counter_reset" and not self.resets[id(event)] and hour >= event["at_h"]:
                self.resets[id(event)] = True
                st = self.state[event["station"]]
                st.rain_total_mm, st.tips_offset = 0.0, 0

    def garbage_due(self, now: datetime, hour: float) -> Iterator[Emission]:
        """The broken payloads whose time has come."""
        while self.garbage and self.garbage[0]["at_h"] <= hour:
            event = self.garbage.pop(0)
            if event["station"] in self.wanted:
                end = self.start + timedelta(seconds=self.duration_s)
                yield Emission(event["station"], _garbage(event, now, end, self.rng), now)

    def report(self, sid: str, st: _Station, t1: int, now: datetime, hour: float) -> Iterator[Emission]:
        """One station's step: its status when it falls silent or wakes, then its sample when one is due."""
        # Silence: the station lost power; its gateway drops off the broker.
        silent_now = any(_within(e, hour) for e in _events_for(self.events, sid, "silent"))
        if silent_now != st.silent:
            st.silent = silent_now
            if sid in self.wanted:
                yield Emission(sid, Status(topics.STATUS_OFFLINE if silent_now else topics.STATUS_ONLINE), now)
        if t1 < st.next_report_s:
            return
        st.next_report_s = t1 + (self.fast_interval if _is_fast(st, self.network) else st.interval_s)
        if st.silent:
            return
        sample = _sample(st, self.network, now, hour, self.rng, self.noise, self.events, self.spikes_done,
                         self.local_offset_h)
        if sid in self.wanted:
            yield from self._send_or_hold(sid, st, sample, now, hour)

    def _send_or_hold(self, sid: str, st: _Station, sample: dict[str, Any], now: datetime,
                      hour: float) -> Iterator[Emission]:
        """In an outage the logger keeps the sample; after it, the backlog goes out with it in batches."""
        if any(_within(e, hour) for e in _events_for(self.events, sid, "outage")):
            st.backlog.append(sample)  # stored in the logger, sent after reconnect
            return
        if not st.backlog:
            yield Emission(sid, sample, now)
            return
        backlog, st.backlog = st.backlog + [sample], []
        for i in range(0, len(backlog), topics.MAX_SAMPLES_PER_PAYLOAD):
            chunk = backlog[i:i + topics.MAX_SAMPLES_PER_PAYLOAD]
            yield Emission(sid, chunk if len(chunk) > 1 else chunk[0], now)


def _initial_state(scenario: Mapping[str, Any], stations: list[Mapping[str, Any]], step_s: int,
                   rng: random.Random) -> dict[str, _Station]:
    """Each station's starting memory: kind, report interval, a spread-out first report, counters, battery."""
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
    return state


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
