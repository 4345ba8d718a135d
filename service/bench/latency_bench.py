"""``ews bench latency``: time from publishing a threshold-crossing reading to the SMS request at the provider.

``ews run`` runs as a subprocess (a private Mosquitto, SQLite, Twilio provider pointed at the
local fake); this process publishes a steady stream and runs the fake, so both timestamps
come from one monotonic clock.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from config.settings import load_settings
from sensors import topics
from service.bench.common import (PREFIX, Progress, add_subscribers, goal_note, note, percentile, prepare_database,
                                  reading_payload, report, station_area, station_id, twilio_sink, verdict, workspace)
from service.bench.ingest_bench import backlog
from service.bench.mqtt_clients import connected, create_session, mqtt_client, publish_all
from service.bench.process import ServiceProcess
from service.bootstrap import shared_subscription_group
from service.db.engine import make_engine
from service.db.schema import readings
from service.heap import collector_waits
from service.mqtt_ingest import backlog_session


LEVELS = (("WASPADA", 2.0), ("SIAGA", 2.5), ("AWAS", 3.0))  # the bench stations' lines (m)
# A river rises: every step between two readings of a station stays within the spike check's
# 0.1 m (spec section 17, `quality.max_step_per_min`), as a real crossing does. A bigger jump is
# held back as doubtful until the station's next reading confirms it (0.1 s later at 500/s over 50
# stations, 0.25 s at 2,000/s over 500), and the bench would time the stream's pace, not the service.
BELOW, ABOVE, RISE = 0.04, 0.03, 0.05  # just below a line; a crossing just above it; the rise per reading
# The backlog's levels (m) over its last hours: within the default rise rate (0.5 m/h,
# config/rules/defaults.json) of the first crossing (2.03 m). Lower, and the first live reading
# rose fast enough over the backlog's last hour to raise WASPADA at once: the crossing then found
# its alert raised, and its warning queued behind fifty others at 10 SMS/s.
BACKLOG_BAND = (1.6, 1.9)


class River:
    """One bench station's water level: just below its next line, a crossing just above it, then a rise."""

    def __init__(self) -> None:
        self.crossed = 0  # lines crossed so far
        self.value = LEVELS[0][1] - BELOW

    def reading(self, sent: int) -> float:
        """The next regular reading: rising by ``RISE`` towards just below the next line, with a small wobble."""
        target = LEVELS[self.crossed][1] - BELOW if self.crossed < len(LEVELS) else self.value
        self.value = min(target, self.value + RISE)
        return round(self.value - 0.005 * (sent % 3), 3)

    def cross(self, level: int) -> float:
        """The reading that crosses line ``level`` (the one after the last crossed)."""
        self.crossed = level + 1
        self.value = LEVELS[level][1] + ABOVE
        return round(self.value, 3)


def crossing_plan(crossings: int, stations: int) -> list[tuple[int, int]]:
    """(station, level index) of each crossing: every station to WASPADA first, then SIAGA, then AWAS."""
    plan = [(k % stations, k // stations) for k in range(min(crossings, stations * len(LEVELS)))]
    return plan


def stream(url: str, rate: float, duration: float, plan: list[tuple[int, int]], stations: int,
           progress: Progress) -> dict[tuple[int, int], float]:
    """Publish ``rate`` readings/s for ``duration`` s over ``stations``; the crossings of ``plan`` are spread evenly.

    Each station's level is a ``River``: after a crossing it rises to just below its next line (no
    new event). Return {(station, level index): monotonic publish time of the crossing reading}.
    """
    with connected(mqtt_client(url, f"bench-gw-{uuid.uuid4().hex[:6]}", clean=True), url) as client:
        return _stream_on(client, rate, duration, plan, stations, progress)


def _stream_on(client, rate: float, duration: float, plan: list[tuple[int, int]], stations: int,
               progress: Progress) -> dict[tuple[int, int], float]:
    """``stream`` through a connected gateway client."""
    crossings: dict[tuple[int, int], float] = {}
    rivers = [River() for _ in range(stations)]
    every = duration / (len(plan) + 1)
    started = time.monotonic()
    next_cross = started + every
    sent = 0
    total = int(rate * duration)
    while sent < total:
        due = started + sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if plan and time.monotonic() >= next_cross:
            station, level = plan.pop(0)
            crossing = reading_payload(datetime.now(timezone.utc), rivers[station].cross(level))
            crossings[(station, level)] = time.monotonic()
            client.publish(f"{PREFIX}/stations/{station_id(station)}/readings", crossing, qos=1)
            next_cross += every
        s = sent % stations
        client.publish(f"{PREFIX}/stations/{station_id(s)}/readings",
                       reading_payload(datetime.now(timezone.utc), rivers[s].reading(sent)), qos=1)
        sent += 1
        if sent % 200 == 0:
            progress.update(sent)
    progress.done(sent)
    return crossings


def warm_up(url: str, stations: int) -> None:
    """One normal reading per station before the clock starts: in a running network every station has a
    state already, and creating it (once per station) is not what this mode measures."""
    now = datetime.now(timezone.utc)
    level = River().value
    publish_all(url, ((f"{PREFIX}/stations/{station_id(s)}/readings", reading_payload(now, level))
                      for s in range(stations)), stations)
    time.sleep(1.0 + stations / 500)


def queue_backlog(url: str, count: int, stations: int, service_env: dict, quiet: bool) -> float:
    """Flush ``count`` old readings on the stations' backlog topics (a gateway back from an outage) into the service's
    backlog session before it starts, so they drain while the stream runs (published while it ran, they were
    stored as fast as they came and gone before the stream began); return seconds."""
    settings = load_settings(service_env)
    _, session_id = backlog_session(settings.mqtt, settings.mqtt_client_id)
    group, topic = shared_subscription_group(settings), topics.backlog_subscription(PREFIX)
    create_session(url, session_id, f"$share/{group}/{topic}" if group else topic)

    def items():
        for topic, payload in backlog(count, stations, seed=3, start_in=(1.65, 1.85), band=BACKLOG_BAND):
            yield topic.replace("/readings", "/backlog"), payload

    return publish_all(url, items(), count, Progress("backlog flush", count, quiet))


def _count_readings(database_url: str) -> int:
    from sqlalchemy import func, select


    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(readings)).scalar_one()
    finally:
        engine.dispose()


def _resident_sms(fake, index_of: dict):
    """Each SMS request to a bench station's resident: (station, request, body, the levels its text names)."""
    for request in fake.creates():
        station = index_of.get(request.form.get("To"))
        if station is not None:
            body = request.form.get("Body", "")
            yield station, request, body, [level for level, (name, _) in enumerate(LEVELS) if f" {name} banjir" in body]


def matched(fake, index_of: dict, crossings: dict, before: set | None = None) -> dict[tuple[int, int], float]:
    """The first SMS request for each crossing after its publish: to the station's resident, naming the level.
    A crossing whose resident was told of that level before it was published goes into ``before``."""
    first: dict[tuple[int, int], float] = {}
    for station, request, _body, levels in _resident_sms(fake, index_of):
        for key in ((station, level) for level in levels):
            if key not in crossings or key in first:
                continue
            if request.at >= crossings[key]:
                first[key] = request.at
            elif before is not None:
                before.add(key)
    return first


FALSE = "false_all_clears"


def told(fake, index_of: dict, crossings: dict) -> dict[str, int]:
    """What the residents were told besides the first warning of each crossing: no bench river ever falls, so every
    all-clear is a false one (a warning told before the crossing too), and a level told twice was cleared between."""
    counts = {"sms_to_residents": 0, FALSE: 0, "repeated_warnings": 0}
    warned: set[tuple[int, int]] = set()
    for station, _request, body, levels in _resident_sms(fake, index_of):
        counts["sms_to_residents"] += 1
        counts[FALSE] += "NORMAL" in body
        for level in levels:
            counts["repeated_warnings"] += (station, level) in warned
            warned.add((station, level))
    return counts


def _measure(args) -> dict:
    """Run ``ews run``, flush the backlog (if any), stream; return what was published and what the provider saw."""
    stations, quiet = args.stations, args.quiet
    seen: dict = {"backlog_s": None, "backlog_left": None, "stored_at_end": None, "told_before": set()}
    with workspace("latency", args.database) as (tmp, database_url, broker), twilio_sink()() as fake:
        engine = prepare_database(database_url, stations)
        phones = add_subscribers(engine, [station_area(i) for i in range(stations)])
        engine.dispose()
        index_of = {phone: i for i, phone in enumerate(phones)}
        service = ServiceProcess(tmp / "svc", database_url=database_url, mqtt_url=broker.url,
                                 prefix=PREFIX, env=fake.env())
        service.env["EWS_PUBLIC_URL"] = service.base_url
        if args.backlog:
            seen["backlog_s"] = queue_backlog(broker.url, args.backlog, stations, service.env, quiet)
        note("starting ews run", quiet)
        service.start()
        try:
            time.sleep(0.5)
            warm_up(broker.url, stations)
            if args.backlog:
                seen["backlog_left"] = args.backlog + stations - _count_readings(database_url)
            plan = crossing_plan(args.crossings, stations)
            # This process's own full collections took 0.1-0.6 s (the flush's clients, the fake's requests):
            # the fake could not note an SMS request's arrival meanwhile, and the stream fell behind its pace.
            with collector_waits():
                crossings = seen["crossings"] = stream(broker.url, args.rate, args.duration, plan, stations, Progress(
                    f"stream {args.rate:g}/s", int(args.rate * args.duration), quiet))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and len(matched(fake, index_of, crossings)) < len(crossings):
                    time.sleep(0.2)
            if args.backlog:
                seen["stored_at_end"] = _count_readings(database_url)
        finally:
            service.stop()
        seen["first_sms"] = matched(fake, index_of, crossings, seen["told_before"])
        seen["sms_in_all"] = len(fake.creates())
        seen["told"] = told(fake, index_of, crossings)
    return seen


def run(args) -> int:
    """The latency mode."""
    seen = _measure(args)
    crossings, first_sms, told_before, stations = seen["crossings"], seen["first_sms"], seen["told_before"], args.stations
    latencies = [(first_sms[k] - crossings[k]) * 1000 for k in crossings if k in first_sms]
    goal = 1000 if args.backlog else (300 if stations > 100 else 200)
    missing = len(crossings) - len(latencies)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    fast = bool(latencies) and p99 <= goal and missing == 0 and not told_before and len(crossings) >= 100
    extra = seen["told"]
    sound = extra[FALSE] == 0 and extra["repeated_warnings"] == 0  # a false all-clear is a defect, not a figure
    met = fast and sound
    figures = {
        "database": args.database, "rate_per_s": args.rate, "duration_s": args.duration,
        "crossings": len(crossings), "sms_seen": len(latencies), "missing": missing,
        "told_before_crossing": len(told_before), "sms_requests": seen["sms_in_all"],
        "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "max_ms": round(max(latencies, default=float("nan")), 1),
        "stations": stations, "backlog": args.backlog, "goal_p99_ms": goal, "goal_met": met, **extra,
    }
    if args.backlog:
        figures.update(backlog_publish_s=round(seen["backlog_s"], 1), backlog_left_at_stream_start=seen["backlog_left"],
                       readings_stored_at_end=seen["stored_at_end"])
    rows = [
        ("database", args.database),
        ("stream", f"{args.rate:g} readings/s for {args.duration:g} s over {stations} stations"),
        ("threshold crossings", f"{len(crossings)} (evenly spread; goal needs >= 100)"),
        *([("backlog flushed on the backlog topic", f"{args.backlog:,} readings, published in {seen['backlog_s']:.1f} "
            f"s; {seen['backlog_left']:,} left to store when the stream began, {seen['stored_at_end']:,} readings "
            "stored when it ended")] if args.backlog else []),
        ("SMS requests matched", f"{len(latencies)} (missing {missing}; {seen['sms_in_all']} SMS requests in all)"),
        ("told before the crossing", f"{len(told_before)} (the level's SMS came before its publish: not timed)"),
        ("publish -> SMS request p50", f"{p50:.0f} ms"),
        ("publish -> SMS request p99", f"{p99:.0f} ms {goal_note(f'<= {goal} ms', fast)}"),
        ("max", f"{figures['max_ms']:.0f} ms"),
        ("all-clears told", f"{extra[FALSE]} (no bench river falls: each is false); warnings told twice "
         f"{extra['repeated_warnings']}; {extra['sms_to_residents']} SMS to residents {goal_note('none', sound)}"),
    ]
    report(args, "latency", rows, figures,
           f"latency: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(latencies)} crossings at {args.rate:g} readings/s, "
           f"{stations} stations{f', backlog {args.backlog:,}' if args.backlog else ''}"
           f"{'' if sound else f', {extra[FALSE]} false all-clears'} ({verdict(met)})")
    return 0
