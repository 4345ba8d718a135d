"""``ews bench api``: ``GET /api/v1/stations`` (100 stations with status) under 20 concurrent clients,
against ``ews run`` (waitress, as in production)."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

from config.settings import load_settings
from service.bench.common import (PREFIX, Progress, goal_note, note, percentile, prepare_database, report, station_id,
                                  verdict, workspace)
from service.bench.process import ServiceProcess
from service.bootstrap import bootstrap
from service.ingest import Message


def give_status(database_url: str, stations: int) -> None:
    """One recent sample per metric for every station, through the real ingest path (so each has a status)."""
    services = bootstrap(load_settings({"EWS_DATABASE_URL": database_url, "EWS_MQTT_TOPIC_PREFIX": PREFIX}))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    messages = []
    for i in range(stations):
        body = [{"ts": (now - timedelta(minutes=m)).isoformat(), "values": {"water_level": 1.0 + m / 100,
                                                                         "battery": 12.5, "signal": -80}}
                for m in range(10, 0, -1)]
        messages.append(Message(topic=f"{PREFIX}/stations/{station_id(i)}/readings", payload=json.dumps(body).encode(),
                                received_at=now))
    services.ingestor.ingest(messages)
    services.engine.dispose()


def hammer(url: str, headers: dict, clients: int, per_client: int, label: str, quiet: bool) -> tuple[list[float], int, float]:
    """``clients`` keep-alive clients, ``per_client`` requests each (after 5 unmeasured); return (ms, errors, s)."""
    import requests

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    progress = Progress(label, clients * per_client, quiet)

    def client():
        nonlocal errors
        session = requests.Session()
        for _ in range(5):  # warm-up, not measured
            session.get(url, headers=headers, timeout=30)
        mine, bad = [], 0
        for _ in range(per_client):
            began = time.perf_counter()
            answer = session.get(url, headers=headers, timeout=30)
            mine.append((time.perf_counter() - began) * 1000)
            bad += answer.status_code != 200
        with lock:
            latencies.extend(mine)
            errors += bad
        session.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        progress.update(len(latencies))
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    progress.done(len(latencies))
    return latencies, errors, elapsed


def run(args) -> int:
    """The api mode: the station list (viewer token) and the public dashboard document (no token)."""
    import requests

    stations, clients, per_client, quiet = args.stations, args.clients, args.requests, args.quiet
    with workspace("api", args.database) as (tmp, database_url, broker):
        prepare_database(database_url, stations).dispose()
        give_status(database_url, stations)
        service = ServiceProcess(tmp / "svc", database_url=database_url, mqtt_url=broker.url, prefix=PREFIX)
        note("starting ews run", quiet)
        service.start()
        try:
            token = service.token("viewer")
            url = f"{service.base_url}/api/v1/stations?limit={stations}"
            headers = {"Authorization": f"Bearer {token}"}
            check = requests.get(url, headers=headers, timeout=30)
            check.raise_for_status()
            listed = len(check.json()["items"])
            latencies, errors, elapsed = hammer(url, headers, clients, per_client, f"{clients} clients /stations", quiet)
            public_url = f"{service.base_url}/dashboard/public.json"
            requests.get(public_url, timeout=30).raise_for_status()
            public, public_errors, public_elapsed = hammer(public_url, {}, clients, per_client,
                                                           f"{clients} clients public.json", quiet)
        finally:
            service.stop()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    q50, q99 = percentile(public, 50), percentile(public, 99)
    met = p99 <= 50 and errors == 0
    public_met = q99 <= 50 and public_errors == 0
    figures = {"database": args.database, "stations": stations, "listed": listed, "clients": clients,
               "requests": len(latencies), "errors": errors, "throughput_per_s": round(len(latencies) / elapsed, 1),
               "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "goal_p99_ms": 50, "goal_met": met,
               "public_requests": len(public), "public_errors": public_errors,
               "public_throughput_per_s": round(len(public) / public_elapsed, 1),
               "public_p50_ms": round(q50, 1), "public_p99_ms": round(q99, 1), "public_goal_met": public_met}
    rows = [
        ("database", args.database),
        ("request", f"GET /api/v1/stations?limit={stations} ({listed} stations with status)"),
        ("clients", f"{clients} concurrent, keep-alive, {per_client} requests each"),
        ("answers", f"{len(latencies):,} ({errors} not 200), {len(latencies) / elapsed:.0f}/s"),
        ("p50", f"{p50:.1f} ms"),
        ("p99", f"{p99:.1f} ms {goal_note('<= 50 ms', met)}"),
        ("request", f"GET /dashboard/public.json (no token, {stations} stations)"),
        ("answers", f"{len(public):,} ({public_errors} not 200), {len(public) / public_elapsed:.0f}/s"),
        ("p50", f"{q50:.1f} ms"),
        ("p99", f"{q99:.1f} ms {goal_note('<= 50 ms', public_met)}"),
    ]
    report(args, "api", rows, figures,
           f"api: /stations p50 {p50:.1f} ms, p99 {p99:.1f} ms, {len(latencies) / elapsed:.0f} req/s; public.json p50 "
           f"{q50:.1f} ms, p99 {q99:.1f} ms, {len(public) / public_elapsed:.0f} req/s with {clients} clients "
           f"({verdict(met and public_met)})")
    return 0
