"""``ews simulate``: simulated field gateways publishing a scenario over MQTT.

Two halves, kept apart so the first is testable without a broker:

- ``sensors/scenario.py``: ``scenario_samples(scenario, start, seed)``, a pure generator of
  what the gateways would send, in send order.
- this module: ``command(args)`` anchors the scenario to the wall clock, paces it by
  ``--speed`` and publishes it, one MQTT client per station (each with its own will).

Scenarios are JSON files in ``sensors/scenarios/``; see docs/field.md for the format.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from alerts.errors import CommandFailed, UsageError
from sensors import mqttlink, topics
# The scenario half lives in sensors/scenario.py; some names are re-exported for the tests and tools.
from sensors.scenario import (  # noqa: F401
    Emission,
    ScenarioError,
    Status,
    encode_payload,
    list_scenarios,
    load_catchments,
    load_scenario,
    load_seed_stations,
    rain_intensity,
    rfc3339,
    sample_count,
    scenario_samples,
    water_level_thresholds,
)
from sensors.siren_sim import SimulatedSirens

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
    parser.add_argument("--exercise", type=int, metavar="ID",
                        help="publish as drill readings of exercise ID (started with POST /api/v1/exercises) on "
                             "{prefix}/exercise/stations/{id}/readings; no status topics")
    parser.add_argument("--mqtt-url", help="broker URL (default: EWS_MQTT_URL, else the embedded broker of ews run on the "
                                           "same database, wherever it listens, else mqtt://127.0.0.1:1883)")
    parser.add_argument("--prefix", help="topic prefix (default: EWS_MQTT_TOPIC_PREFIX or ews/v1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for noise (default 1)")
    parser.add_argument("--client-id-prefix", default=None, help="MQTT client ids are {this}-{station} (default ews-sim-{pid})")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--sirens", action="store_true",
                        help="also run a controller for every siren of the registry (the stations' sirens on "
                             "EWS_DATABASE_URL) that answers its commands (docs/sirens.md)")
    parser.add_argument("--siren", action="append", default=[], metavar="ID",
                        help="run an answering controller for this siren id (repeat for more)")
    parser.add_argument("--silent-siren", action="append", default=[], metavar="ID",
                        help="run a controller for this siren id that receives its commands and never answers "
                             "(the service re-sends, then tells staff it does not respond)")
    parser.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                        help="after the scenario, keep the simulated sirens answering this long (e.g. for the off)")


def command(args: argparse.Namespace) -> int:
    """Run ``ews simulate``; 0 when the scenario was published completely."""
    try:
        scenario = load_scenario(args.scenario)
        url, source = mqttlink.resolve_broker_url(args.mqtt_url, recorded=getattr(args, "recorded_broker_url", None))
        broker = mqttlink.parse_broker_url(url)
    except (ScenarioError, ValueError) as exc:
        raise UsageError(str(exc)) from exc  # printed as one line by service.cli
    stations = load_seed_stations()
    known = {s["id"] for s in stations}
    if args.stations:
        unknown = [s for s in args.stations if s not in known]
        if unknown:
            raise UsageError(f"unknown station(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    prefix = topics.normalize_prefix(args.prefix) if args.prefix else mqttlink.default_prefix()
    publisher = Publisher(broker, prefix, args.stations or sorted(known),
                          client_prefix=args.client_id_prefix or f"ews-sim-{os.getpid()}", exercise=args.exercise)
    progress = Progress(scenario, quiet=args.quiet)
    print(f"ews simulate: publishing to {broker.host}:{broker.port} ({source})", file=sys.stderr)
    sirens = _start_sirens(args, broker, prefix)
    try:
        if not publisher.connect(timeout=15):
            raise CommandFailed(f"cannot reach the MQTT broker at {broker.host}:{broker.port}; start it or pass --mqtt-url")
        if args.exercise is not None and not args.quiet:
            print(f"exercise #{args.exercise}: drill readings on {topics.exercise_readings_subscription(prefix)} "
                  "(the service takes them while that exercise covers the station)")
        round_no = 0
        while True:
            run_once(scenario, publisher, progress, speed=args.speed, seed=args.seed + round_no,
                     stations=stations, only=args.stations)
            round_no += 1
            if not args.loop:
                break
        if not publisher.drain(timeout=60):
            raise CommandFailed(f"{publisher.pending()} message(s) not acknowledged by the broker")
        progress.finish(publisher)
        if sirens is not None and args.linger > 0:
            time.sleep(args.linger)
        return 0
    except KeyboardInterrupt:
        print("\news simulate: interrupted", file=sys.stderr)
        return 130
    finally:
        publisher.close()
        if sirens is not None:
            sirens.client.disconnect()
            sirens.client.loop_stop()


def _start_sirens(args: argparse.Namespace, broker, prefix: str):
    """The simulated siren controllers asked for (``--sirens``, ``--siren``, ``--silent-siren``), or None."""
    registry = getattr(args, "registry_sirens", None)
    answering = list(args.siren)
    if args.sirens and registry is not None:
        try:
            answering += list(registry())
        except Exception as exc:  # noqa: BLE001 - a database we cannot read is a usage problem here
            raise UsageError(f"--sirens: cannot read the registry's sirens ({exc.__class__.__name__}); "
                             "set EWS_DATABASE_URL to the service's database or name them with --siren") from None
    if not answering and not args.silent_siren:
        if args.sirens:
            print("ews simulate: --sirens: the registry lists no siren (PATCH a station's sirens first)", file=sys.stderr)
        return None
    bad = [sid for sid in answering + args.silent_siren if not topics.is_station_id(sid)]
    if bad:
        raise UsageError(f"siren id(s) {', '.join(bad)}: use 1-64 letters, digits, '-' or '_'")
    client = mqttlink.make_client(broker, f"{args.client_id_prefix or f'ews-sim-{os.getpid()}'}-sirens")
    sirens = SimulatedSirens(client, prefix, answering, args.silent_siren,
                             say=lambda line: print(line, file=sys.stderr, flush=True))
    client.connect_async(broker.host, broker.port, keepalive=30)
    client.loop_start()
    if not sirens.wait_subscribed(15):
        raise CommandFailed(f"simulated sirens could not subscribe at {broker.host}:{broker.port}")
    print(f"ews simulate: sirens {', '.join(sirens.answering) or '-'} answer"
          + (f"; {', '.join(sirens.silent)} stay silent" if sirens.silent else ""), file=sys.stderr)
    return sirens


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
    """One paho client per simulated gateway, each with its own retained ``offline`` will.

    With ``exercise`` (an exercise id) the samples go to the exercise topics, and nothing is
    said on the stations' real status topics: a drill must not mark a real station offline.
    """

    def __init__(self, broker, prefix: str, station_ids: list[str], *, client_prefix: str,
                 exercise: int | None = None):
        self.prefix = prefix
        self.exercise = exercise
        self.samples_sent = 0
        self.payloads_sent = 0
        self._lock = threading.Lock()
        self._unacked: dict[tuple[str, int], float] = {}
        self._acked_early: set[tuple[str, int]] = set()
        self.clients = {}
        for sid in station_ids:
            will = None if exercise is not None else (topics.status_topic(prefix, sid), topics.STATUS_OFFLINE)
            client = mqttlink.make_client(broker, f"{client_prefix}-{sid}", will=will, max_inflight=100)
            client.on_connect = self._on_connect_station(sid)
            client.on_publish = self._on_publish(sid)
            self.clients[sid] = client
        for client in self.clients.values():
            client.connect_async(broker.host, broker.port, keepalive=30)
            client.loop_start()

    def _on_connect_station(self, sid: str):
        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure and self.exercise is None:
                client.publish(topics.status_topic(self.prefix, sid), topics.STATUS_ONLINE, qos=1, retain=True)
        return on_connect

    def _on_publish(self, sid: str):
        def on_publish(client, userdata, mid, reason_code, properties):
            with self._lock:
                if self._unacked.pop((sid, mid), None) is None:
                    self._acked_early.add((sid, mid))  # the PUBACK beat _publish's bookkeeping
        return on_publish

    def connect(self, timeout: float) -> bool:
        """Wait until every client is connected."""
        deadline = time.monotonic() + timeout
        while not all(c.is_connected() for c in self.clients.values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
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
            if self.exercise is None:
                self._publish(sid, topics.status_topic(self.prefix, sid), payload.state.encode(), retain=True)
            return
        topic = (topics.readings_topic(self.prefix, sid) if self.exercise is None
                 else topics.exercise_readings_topic(self.prefix, sid))
        self._publish(sid, topic, encode_payload(payload))
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
        """Say goodbye properly: stations offline, then disconnect."""
        try:
            for sid in list(self.clients):
                if self.exercise is None and self.clients[sid].is_connected():
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
