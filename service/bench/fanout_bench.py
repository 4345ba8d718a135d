"""``ews bench fanout``: one AWAS warning to 10,000 subscribers of one area through a rate-limited provider."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

from service.bench.common import (PREFIX, Progress, add_subscribers, goal_note, note, prepare_database,
                                  reading_payload, report, station_area, station_id, twilio_sink, verdict, workspace)
from service.bench.mqtt_clients import connected, mqtt_client
from service.bench.process import ServiceProcess


def max_in_any_second(times: list[float]) -> int:
    """The most requests that started within any one-second window."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def slots_missed(service: ServiceProcess) -> int | None:
    """``ews_sms_rate_slots_missed_total`` of the service: rate slots its senders woke too late for."""
    try:
        text = service.text("/metrics")
    except OSError:
        return None
    return next((int(float(line.split()[-1])) for line in text.splitlines()
                 if line.startswith("ews_sms_rate_slots_missed_total")), None)


def publish_crossing(url: str) -> float:
    """Publish one AWAS reading for station 0; return its monotonic publish time."""
    with connected(mqtt_client(url, f"bench-gw-{uuid.uuid4().hex[:6]}", clean=True), url) as client:
        at = time.monotonic()
        client.publish(f"{PREFIX}/stations/{station_id(0)}/readings",
                       reading_payload(datetime.now(timezone.utc), 3.4), qos=1).wait_for_publish(10)
    return at


def run(args) -> int:
    """The fanout mode."""
    count, limit, quiet = args.subscribers, args.limit, args.quiet
    with workspace("fanout", args.database) as (tmp, database_url, broker), twilio_sink()(latency=args.latency) as fake:
        engine = prepare_database(database_url, 1)
        add_subscribers(engine, [station_area(0)], per_area=count)
        engine.dispose()
        service = ServiceProcess(tmp / "svc", database_url=database_url, mqtt_url=broker.url, prefix=PREFIX,
                                 env={**fake.env(), "EWS_SMS_MAX_PER_SECOND": f"{limit:g}"})
        service.env["EWS_PUBLIC_URL"] = service.base_url
        note("starting ews run", quiet)
        service.start()
        try:
            time.sleep(0.5)
            published = publish_crossing(broker.url)
            progress = Progress("SMS requests", count, quiet)
            deadline = time.monotonic() + count / limit * 3 + 60
            while len(fake.creates()) < count and time.monotonic() < deadline:
                progress.update(len(fake.creates()))
                time.sleep(0.1)
            progress.done(len(fake.creates()))
            missed = slots_missed(service)
        finally:
            service.stop()
        times = sorted(r.at for r in fake.creates())
        unique = len({r.form.get("To") for r in fake.creates()})
    n = len(times)
    span = times[-1] - times[0] if n > 1 else float("nan")
    rate = (n - 1) / span if n > 1 else 0.0
    share = rate / limit
    first = (times[0] - published) if times else float("nan")
    peak = max_in_any_second(times)
    met = share >= 0.95 and peak <= limit and unique == count
    figures = {
        "database": args.database, "subscribers": count, "limit_per_s": limit, "provider_latency_s": args.latency,
        "requests": n, "unique_recipients": unique, "rate_per_s": round(rate, 1), "share_of_limit": round(share, 3),
        "max_in_any_second": peak, "slots_missed": missed, "first_sms_s": round(first, 3),
        "total_s": round(times[-1] - published, 1) if times else None,
        "goal_share": 0.95, "goal_met": met,
    }
    rows = [
        ("database", args.database),
        ("subscribers in the area", f"{count:,}"),
        ("provider", f"fake Twilio, {args.latency * 1000:.0f} ms per request; EWS_SMS_MAX_PER_SECOND={limit:g}"),
        ("SMS requests", f"{n:,} to {unique:,} recipients"),
        ("achieved rate", f"{rate:.1f}/s = {share:.3f} of the limit {goal_note('>= 0.95', met)}"),
        ("most in any 1 s window", f"{peak} (goal <= {limit:g})"),
        ("rate slots given up", f"{missed} (senders that woke too late for them: a busy machine)"),
        ("publish -> first SMS", f"{first * 1000:.0f} ms"),
        ("publish -> last SMS", f"{figures['total_s']} s"),
    ]
    report(args, "fanout", rows, figures,
           f"fanout: {rate:.1f}/s = {share:.3f} of {limit:g}/s, at most {peak} in any second, "
           f"first SMS after {first * 1000:.0f} ms, {n:,} requests ({verdict(met)})")
    return 0
