"""``ews bench latency``: time from publishing a threshold-crossing reading to the SMS request at the provider.

``ews run`` runs as a subprocess (a private Mosquitto, SQLite, Twilio provider pointed at the
local fake); this process publishes a steady stream and runs the fake, so both timestamps
come from one monotonic clock.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from service.bench.common import (
    Progress,
    add_subscribers,
    bench_database,
    bench_mosquitto,
    mqtt_client,
    note,
    percentile,
    prepare_database,
    reading_payload,
    report,
    station_area,
    station_id,
)
from service.bench.fake_twilio import FakeTwilio
from service.bench.process import ServiceProcess

PREFIX = "ews/v1"


def stream(url: str, rate: float, duration: float, every: float, stations: int, progress: Progress) -> dict[int, float]:
    """Publish ``rate`` readings/s for ``duration`` s; every ``every`` s one more station jumps to AWAS.

    Return {station index: monotonic publish time of its crossing reading}.
    """
    from config.settings import parse_mqtt_url

    parsed = parse_mqtt_url(url)
    client = mqtt_client(url, f"bench-gw-{uuid.uuid4().hex[:6]}", clean=True)
    client.connect(parsed.host, parsed.port, keepalive=30)
    client.loop_start()
    crossings: dict[int, float] = {}
    crossed: set[int] = set()
    started = time.monotonic()
    next_cross = started + every
    sent = 0
    i = 0
    total = int(rate * duration)
    while sent < total:
        due = started + sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        if time.monotonic() >= next_cross and len(crossed) < stations - 1:
            k = len(crossed)
            crossed.add(k)
            payload = reading_payload(datetime.now(timezone.utc), 3.4)
            crossings[k] = time.monotonic()
            client.publish(f"{PREFIX}/stations/{station_id(k)}/readings", payload, qos=1)
            next_cross += every
        s = i % stations
        i += 1
        if s in crossed:
            continue  # a station past its threshold stays quiet: one warning each
        client.publish(f"{PREFIX}/stations/{station_id(s)}/readings",
                       reading_payload(datetime.now(timezone.utc), 1.0 + (sent % 7) * 0.01), qos=1)
        sent += 1
        if sent % 200 == 0:
            progress.update(sent)
    progress.done(sent)
    client.disconnect()
    client.loop_stop()
    return crossings


def run(args) -> int:
    """The latency mode."""
    stations, quiet = args.stations, args.quiet
    with tempfile.TemporaryDirectory(prefix="ews-bench-latency-") as tmp, \
            bench_database(args.database, Path(tmp)) as database_url, bench_mosquitto() as broker, \
            FakeTwilio() as fake:
        engine = prepare_database(database_url, stations)
        phones = add_subscribers(engine, [station_area(i) for i in range(stations)])
        engine.dispose()
        index_of = {phone: i for i, phone in enumerate(phones)}
        service = ServiceProcess(Path(tmp) / "svc", database_url=database_url, mqtt_url=broker.url,
                                 prefix=PREFIX, env=fake.env())
        service.env["EWS_PUBLIC_URL"] = service.base_url
        note("starting ews run", quiet)
        service.start()
        try:
            time.sleep(0.5)
            crossings = stream(broker.url, args.rate, args.duration, args.every, stations,
                               Progress(f"stream {args.rate:g}/s", int(args.rate * args.duration), quiet))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len({index_of.get(r.form.get("To")) for r in fake.creates()}
                                                       & set(crossings)) < len(crossings):
                time.sleep(0.1)
        finally:
            service.stop()
        first_sms: dict[int, float] = {}
        for request in fake.creates():
            k = index_of.get(request.form.get("To"))
            if k is not None and k not in first_sms:
                first_sms[k] = request.at
    latencies = [(first_sms[k] - crossings[k]) * 1000 for k in crossings if k in first_sms]
    missing = len(crossings) - len(latencies)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    met = bool(latencies) and p99 <= 200 and missing == 0
    figures = {
        "database": args.database, "rate_per_s": args.rate, "duration_s": args.duration,
        "crossings": len(crossings), "sms_seen": len(latencies), "missing": missing,
        "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "max_ms": round(max(latencies, default=float("nan")), 1),
        "goal_p99_ms": 200, "goal_met": met,
    }
    rows = [
        ("database", args.database),
        ("stream", f"{args.rate:g} readings/s for {args.duration:g} s over {stations} stations"),
        ("threshold crossings", f"{len(crossings)} (one every {args.every:g} s)"),
        ("SMS requests matched", f"{len(latencies)} (missing {missing})"),
        ("publish -> SMS request p50", f"{p50:.0f} ms"),
        ("publish -> SMS request p99", f"{p99:.0f} ms (goal <= 200 ms: {'met' if met else 'MISSED'})"),
        ("max", f"{figures['max_ms']:.0f} ms"),
    ]
    report(args, "latency", rows, figures,
           f"latency: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(latencies)} crossings at {args.rate:g} readings/s "
           f"({'goal met' if met else 'goal missed'})")
    return 0
