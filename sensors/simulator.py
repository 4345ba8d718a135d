"""``ews simulate``: simulated field gateways publishing a scenario over MQTT.

Two halves, kept apart so the first is testable without a broker:

- ``scenario_samples(scenario, start, seed)``: a pure generator of what the gateways
  would send, in send order: ``(station_id, payload, sim_time)`` where ``payload`` is a
  sample dict, a list of sample dicts (a backlog batch after an outage), raw ``bytes``
  (a garbage payload) or a ``Status`` (the gateway went on- or offline).
- ``command(args)``: anchors the scenario to the wall clock, paces it by ``--speed``
  and publishes it, one MQTT client per station (each with its own will).

Scenarios are JSON files in ``sensors/scenarios/``; see docs/field.md for the format.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import math
import os
import random
import sys
import threading
import time
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


# --------------------------------------------------------------------------- pacing


def anchor(duration: timedelta, speed: float, now: datetime) -> datetime:
    """Simulated start so that the scenario ends when the run ends, never ahead of the wall clock.

    The run lasts ``duration / speed`` of wall time and ends at ``now + duration/speed``;
    simulated time ``start + speed·elapsed`` therefore never passes the wall clock.
    ``speed = inf`` means as fast as possible: the scenario's last sample is at ``now``.
    """
    wall = timedelta(0) if math.isinf(speed) else duration / speed
    return now + wall - duration


def parse_speed(raw: str) -> float:
    """``--speed``: a factor of at least 1, or ``max`` for as fast as possible."""
    if str(raw).lower() in ("max", "inf", "0"):
        return math.inf
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number; use e.g. 1440 or max") from None
    if value < 1:
        raise argparse.ArgumentTypeError("speed must be at least 1 (real time) or max")
    return value


# --------------------------------------------------------------------------- command line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``ews simulate`` options."""
    parser.add_argument("--scenario", required=True,
                        help=f"a bundled scenario ({', '.join(list_scenarios())}) or a path to a scenario .json")
    parser.add_argument("--speed", type=parse_speed, default=1440.0,
                        help="simulated seconds per wall second (default 1440: a day per minute); max = as fast as possible")
    parser.add_argument("--stations", nargs="+", metavar="ID", help="publish only these stations (default: all)")
    parser.add_argument("--loop", action="store_true", help="repeat the scenario until interrupted")
    parser.add_argument("--exercise", action="store_true",
                        help="mark the run as an exercise: retained 'on' on {prefix}/exercise while it runs")
    parser.add_argument("--mqtt-url", help="broker URL (default: EWS_MQTT_URL, else the embedded broker at mqtt://127.0.0.1:1883)")
    parser.add_argument("--prefix", help="topic prefix (default: EWS_MQTT_TOPIC_PREFIX or ews/v1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for noise (default 1)")
    parser.add_argument("--client-id-prefix", default=None, help="MQTT client ids are {this}-{station} (default ews-sim-{pid})")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def command(args: argparse.Namespace) -> int:
    """Run ``ews simulate``; 0 when the scenario was published completely."""
    from sensors import mqttlink

    try:
        scenario = load_scenario(args.scenario)
        broker = mqttlink.parse_broker_url(args.mqtt_url or mqttlink.default_broker_url())
    except (ScenarioError, ValueError) as exc:
        print(f"ews simulate: {exc}", file=sys.stderr)
        return 2
    stations = load_seed_stations()
    known = {s["id"] for s in stations}
    if args.stations:
        unknown = [s for s in args.stations if s not in known]
        if unknown:
            print(f"ews simulate: unknown station(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
            return 2
    prefix = topics.normalize_prefix(args.prefix) if args.prefix else mqttlink.default_prefix()
    publisher = Publisher(broker, prefix, args.stations or sorted(known),
                          client_prefix=args.client_id_prefix or f"ews-sim-{os.getpid()}", exercise=args.exercise)
    progress = Progress(scenario, quiet=args.quiet)
    try:
        if not publisher.connect(timeout=15):
            print(f"ews simulate: cannot reach the MQTT broker at {broker}; start it or pass --mqtt-url", file=sys.stderr)
            return 1
        round_no = 0
        while True:
            run_once(scenario, publisher, progress, speed=args.speed, seed=args.seed + round_no,
                     stations=stations, only=args.stations)
            round_no += 1
            if not args.loop:
                break
        if not publisher.drain(timeout=60):
            print(f"ews simulate: {publisher.pending()} message(s) not acknowledged by the broker", file=sys.stderr)
            return 1
        progress.finish(publisher)
        return 0
    except KeyboardInterrupt:
        print("\news simulate: interrupted", file=sys.stderr)
        return 130
    finally:
        publisher.close()


def run_once(scenario, publisher: "Publisher", progress: "Progress", *, speed: float, seed: int,
             stations, only) -> None:
    """Publish one pass of the scenario, paced by ``speed``."""
    duration = timedelta(hours=scenario["duration_h"])
    wall0 = time.monotonic()
    start = anchor(duration, speed, datetime.now(timezone.utc).replace(microsecond=0))
    progress.begin(start)
    for emission in scenario_samples(scenario, start, seed, stations=stations, only=only):
        if not math.isinf(speed):
            due = wall0 + (emission.sim_time - start).total_seconds() / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher.send(emission)
        progress.update(emission, publisher)


class Publisher:
    """One paho client per simulated gateway, each with its own retained ``offline`` will."""

    def __init__(self, broker, prefix: str, station_ids: list[str], *, client_prefix: str, exercise: bool = False):
        from sensors import mqttlink

        self.prefix = prefix
        self.exercise = exercise
        self.samples_sent = 0
        self.payloads_sent = 0
        self._lock = threading.Lock()
        self._unacked: dict[tuple[str, int], float] = {}
        self._acked_early: set[tuple[str, int]] = set()
        self.clients = {}
        for sid in station_ids:
            client = mqttlink.make_client(broker, f"{client_prefix}-{sid}",
                                          will=(topics.status_topic(prefix, sid), topics.STATUS_OFFLINE), max_inflight=100)
            client.on_connect = self._on_connect_station(sid)
            client.on_publish = self._on_publish(sid)
            self.clients[sid] = client
        self.control = None
        if exercise:
            # The exercise flag falls back to "off" if the simulator dies (its will).
            self.control = mqttlink.make_client(broker, f"{client_prefix}-control",
                                                will=(topics.exercise_topic(prefix), topics.EXERCISE_OFF))
            self.control.on_publish = self._on_publish("_control")
            self.clients["_control"] = self.control
        for client in self.clients.values():
            client.connect_async(broker.host, broker.port, keepalive=30)
            client.loop_start()

    def _on_connect_station(self, sid: str):
        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                client.publish(topics.status_topic(self.prefix, sid), topics.STATUS_ONLINE, qos=1, retain=True)
        return on_connect

    def _on_publish(self, sid: str):
        def on_publish(client, userdata, mid, reason_code, properties):
            with self._lock:
                if self._unacked.pop((sid, mid), None) is None:
                    self._acked_early.add((sid, mid))  # the PUBACK beat _publish's bookkeeping
        return on_publish

    def connect(self, timeout: float) -> bool:
        """Wait until every client is connected; then raise the exercise flag if asked."""
        deadline = time.monotonic() + timeout
        while not all(c.is_connected() for c in self.clients.values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        if self.control is not None:
            self._publish("_control", topics.exercise_topic(self.prefix), topics.EXERCISE_ON.encode(), retain=True)
            self.drain(timeout=10)
        return True

    def _publish(self, sid: str, topic: str, payload: bytes, retain: bool = False) -> None:
        # Not under self._lock: paho calls on_publish (which takes it) while holding its own locks.
        info = self.clients[sid].publish(topic, payload, qos=1, retain=retain)
        # NO_CONN still queues the message in paho's memory; it goes out after reconnect.
        with self._lock:
            key = (sid, info.mid)
            if key in self._acked_early:
                self._acked_early.discard(key)
            else:
                self._unacked[key] = time.monotonic()

    def send(self, emission: Emission) -> None:
        """Publish one emission on the right topic."""
        sid, payload = emission.station_id, emission.payload
        if isinstance(payload, Status):
            self._publish(sid, topics.status_topic(self.prefix, sid), payload.state.encode(), retain=True)
            return
        self._publish(sid, topics.readings_topic(self.prefix, sid), encode_payload(payload))
        self.samples_sent += sample_count(payload)
        self.payloads_sent += 1

    def pending(self) -> int:
        """Messages handed to paho but not yet acknowledged by the broker."""
        with self._lock:
            return len(self._unacked)

    def drain(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Say goodbye properly: stations offline, exercise off, then disconnect."""
        try:
            for sid in list(self.clients):
                if sid == "_control":
                    self._publish(sid, topics.exercise_topic(self.prefix), topics.EXERCISE_OFF.encode(), retain=True)
                elif self.clients[sid].is_connected():
                    self._publish(sid, topics.status_topic(self.prefix, sid), topics.STATUS_OFFLINE.encode(), retain=True)
            self.drain(timeout=5)
        finally:
            for client in self.clients.values():
                client.disconnect()
                client.loop_stop()


class Progress:
    """Simulated time, samples sent and current water levels: one updating line on a TTY, plain lines otherwise."""

    def __init__(self, scenario, quiet: bool = False, stream=None):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.levels: dict[str, float] = {}
        self.local_start = datetime.fromisoformat(scenario["local_start"]) if scenario.get("local_start") else None
        self.name = scenario.get("name", "?")
        self.start = None
        self._last_line_hour = -1
        self._last_draw = 0.0

    def begin(self, start: datetime) -> None:
        """A new pass begins at simulated ``start``."""
        self.start = start
        self._last_line_hour = -1
        if not self.quiet:
            print(f"scenario {self.name}: simulated {rfc3339(start)} .. (timestamps end at the wall clock)", file=self.stream)

    def update(self, emission: Emission, publisher: Publisher) -> None:
        """Record the latest levels and redraw when due."""
        payload = emission.payload
        for sample in payload if isinstance(payload, list) else [payload]:
            if isinstance(sample, dict) and "water_level" in sample.get("values", {}):
                self.levels[emission.station_id] = sample["values"]["water_level"]
        if self.quiet:
            return
        elapsed_h = int((emission.sim_time - self.start).total_seconds() // 3600)
        if self.tty:
            if time.monotonic() - self._last_draw >= 0.2:
                self._last_draw = time.monotonic()
                line = self._line(emission.sim_time, publisher)
                width = _terminal_width()
                self.stream.write("\r" + line[: width - 1].ljust(width - 1))
                self.stream.flush()
        elif elapsed_h != self._last_line_hour:
            self._last_line_hour = elapsed_h
            print(self._line(emission.sim_time, publisher), file=self.stream, flush=True)

    def _line(self, moment: datetime, publisher: Publisher) -> str:
        scenario_clock = ""
        if self.local_start is not None:
            local = self.local_start + (moment - self.start)
            scenario_clock = f" [{local:%d %b %H:%M} WITA in the scenario]"
        levels = " ".join(f"{sid}={value:.2f}" for sid, value in sorted(self.levels.items()))
        return f"{rfc3339(moment)}{scenario_clock} sent={publisher.samples_sent} | {levels}"

    def finish(self, publisher: Publisher) -> None:
        """The closing line."""
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\n")
        print(f"done: {publisher.samples_sent} samples in {publisher.payloads_sent} payloads, all acknowledged",
              file=self.stream, flush=True)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 120
