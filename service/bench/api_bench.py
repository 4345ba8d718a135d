"""``ews bench api``: ``GET /api/v1/stations`` (100 stations with status) and ``GET /dashboard/public.json``
under 20 concurrent clients, against ``ews run`` (waitress, as in production).

Besides the latencies it prints the service's CPU time per request served (its process's user and
system time over the run, divided by the requests): on a machine shared with others the
percentiles follow the load, that figure much less.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone

from config.settings import load_settings
from service.bench.common import (PREFIX, Progress, goal_note, note, percentile, prepare_database, report, station_id,
                                  verdict, workspace)
from service.bench.process import ServiceProcess
from service.bootstrap import bootstrap
from service.ingest import Message

WARM_UP = 5  # requests per client before the measured ones


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


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), or None where there is none."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(port: int, path: str, headers: dict) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def hammer(port: int, path: str, headers: dict, clients: int, per_client: int, label: str,
           quiet: bool) -> tuple[list[float], int, float]:
    """``clients`` keep-alive clients, ``per_client`` requests each (after ``WARM_UP``); return (ms, errors, s).

    Each client is a plain ``http.client`` connection reading the whole body: the clients share the
    machine's two cores with the service, so the lighter they are the more of it is the service's.
    """
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    progress = Progress(label, clients * per_client, quiet)

    def get(conn) -> int:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status

    def client():
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(WARM_UP):  # not measured
            get(conn)
        mine, bad = [], 0
        for _ in range(per_client):
            began = time.perf_counter()
            status = get(conn)
            mine.append((time.perf_counter() - began) * 1000)
            bad += status != 200
        with lock:
            latencies.extend(mine)
            errors += bad
        conn.close()

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


def measure(service: ServiceProcess, path: str, headers: dict, args, label: str) -> dict:
    """One case: latencies, throughput, and the CPU time per request of the service and of the clients."""
    load_before = os.getloadavg()[0]
    server_before, clients_before = cpu_seconds(service.pid), time.process_time()
    latencies, errors, elapsed = hammer(service.port, path, headers, args.clients, args.requests, label, args.quiet)
    server_after, clients_after = cpu_seconds(service.pid), time.process_time()
    served = args.clients * (args.requests + WARM_UP)
    server_ms = None if server_before is None else round((server_after - server_before) * 1000 / served, 3)
    return {"requests": len(latencies), "errors": errors, "throughput_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "server_cpu_ms_per_request": server_ms,
            "client_cpu_ms_per_request": round((clients_after - clients_before) * 1000 / served, 3),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "goal_met": percentile(latencies, 99) <= 50 and errors == 0}


def _rows(title: str, case: dict) -> list[tuple[str, str]]:
    cpu = "n/a" if case["server_cpu_ms_per_request"] is None else f"{case['server_cpu_ms_per_request']:.3f} ms"
    return [
        ("request", title),
        ("answers", f"{case['requests']:,} ({case['errors']} not 200), {case['throughput_per_s']:.0f}/s"),
        ("p50", f"{case['p50_ms']:.1f} ms"),
        ("p99", f"{case['p99_ms']:.1f} ms {goal_note('<= 50 ms', case['goal_met'])}"),
        ("service CPU", f"{cpu} per request (clients {case['client_cpu_ms_per_request']:.3f} ms)"),
        ("load", f"{case['load_before']:.2f} -> {case['load_after']:.2f} (1-minute average, {os.cpu_count()} cores)"),
    ]


def run(args) -> int:
    """The api mode: the station list (viewer token) and the public dashboard document (no token)."""
    stations = args.stations
    with workspace("api", args.database) as (tmp, database_url, broker):
        prepare_database(database_url, stations).dispose()
        give_status(database_url, stations)
        service = ServiceProcess(tmp / "svc", database_url=database_url, mqtt_url=broker.url, prefix=PREFIX)
        note("starting ews run", args.quiet)
        service.start()
        try:
            headers = {"Authorization": f"Bearer {service.token('viewer')}"}
            path = f"/api/v1/stations?limit={stations}"
            status, body = fetch(service.port, path, headers)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            listed = len(json.loads(body)["items"])
            listing = measure(service, path, headers, args, f"{args.clients} clients /stations")
            if fetch(service.port, "/dashboard/public.json", {})[0] != 200:
                raise RuntimeError("GET /dashboard/public.json did not answer 200")
            public = measure(service, "/dashboard/public.json", {}, args, f"{args.clients} clients public.json")
        finally:
            service.stop()
    figures = {"database": args.database, "stations": stations, "listed": listed, "clients": args.clients,
               **listing, "goal_p99_ms": 50, **{f"public_{k}": v for k, v in public.items()}}
    rows = [("database", args.database),
            ("clients", f"{args.clients} concurrent, keep-alive (http.client), {args.requests} requests each"),
            *_rows(f"GET /api/v1/stations?limit={stations} ({listed} stations with status)", listing),
            *_rows(f"GET /dashboard/public.json (no token, {stations} stations)", public)]
    both = listing["goal_met"] and public["goal_met"]
    report(args, "api", rows, figures,
           f"api: /stations p50 {listing['p50_ms']:.1f} ms, p99 {listing['p99_ms']:.1f} ms, "
           f"{listing['throughput_per_s']:.0f} req/s, {listing['server_cpu_ms_per_request']} ms CPU/req; public.json p50 "
           f"{public['p50_ms']:.1f} ms, p99 {public['p99_ms']:.1f} ms, {public['throughput_per_s']:.0f} req/s, "
           f"{public['server_cpu_ms_per_request']} ms CPU/req with {args.clients} clients "
           f"({verdict(both)}; load {listing['load_before']:.1f} -> {public['load_after']:.1f})")
    return 0
