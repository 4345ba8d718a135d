"""``ews bench ingest --instances 1,2,3``: how the drain rate scales with several ``ews run --role ingest``.

Each instance is a separate process with its own client id, sharing the readings through the
MQTT shared subscription (``$share/ews/…``) on one PostgreSQL database and one private Mosquitto.
The readings are published while the instances run; the figure is readings stored per second,
from the first publish to the last commit.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import func, select

from service.bench.common import (Progress, note, prepare_database, reading_payload, report, station_id, utc_now,
                                  workspace)
from service.bench.mqtt_clients import publish_all
from service.bench.process import ServiceProcess
from service.db.schema import readings


def _stream(prefix: str, count: int, stations: int):
    start = utc_now().replace(second=0, microsecond=0) - timedelta(days=1)
    for i in range(count):
        minute, station = divmod(i, stations)
        yield (f"{prefix}/stations/{station_id(station)}/readings",
               reading_payload(start + timedelta(seconds=20 * minute), 0.5 + (i % 97) / 1000, seq=i))


def drain_with(instances: int, count: int, stations: int, quiet: bool) -> float:
    """Seconds for ``instances`` ingest processes to store ``count`` readings published meanwhile."""
    with workspace("scale", "postgresql") as (tmp, database_url, broker):
        engine = prepare_database(database_url, stations)
        prefix = f"ews/bench-{uuid.uuid4().hex[:6]}"
        services = [
            ServiceProcess(tmp / f"ingest-{n}", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                           client_id=f"ews-bench-ingest-{n}", env={"EWS_MQTT_SHARED_GROUP": "ews"}, role="ingest")
            for n in range(instances)
        ]
        try:
            for service in services:
                service.start(wait_ready=False)
            for service in services:
                service.wait_ready(90)
            time.sleep(1.0)  # every member's SUBSCRIBE is in place before the first reading
            started = time.monotonic()
            publish_all(broker.url, _stream(prefix, count, stations), count, Progress(f"publish ({instances})", count, quiet))
            progress = Progress(f"drain ({instances} instance{'s' if instances > 1 else ''})", count, quiet)
            stored = 0
            while stored < count and time.monotonic() - started < 900:
                with engine.connect() as conn:
                    stored = conn.execute(select(func.count()).select_from(readings)).scalar_one()
                progress.update(stored)
                time.sleep(0.2)
            progress.done(stored)
            return time.monotonic() - started
        finally:
            for service in services:
                service.stop()
            engine.dispose()


def run(args) -> int:
    """The ingest mode with ``--instances``."""
    counts = [int(n) for n in str(args.instances).split(",")]
    results = []
    for instances in counts:
        note(f"{instances} ingest instance(s): {args.count:,} readings from {args.stations} stations", args.quiet)
        seconds = drain_with(instances, args.count, args.stations, args.quiet)
        results.append((instances, seconds, args.count / seconds))
    base = results[0][2]
    rows = [("database", "postgresql (shared subscription $share/ews, one private Mosquitto)")]
    rows += [(f"{n} instance{'s' if n > 1 else ''}", f"{seconds:.1f} s = {rate:,.0f} readings/s ({rate / base:.2f}x)")
             for n, seconds, rate in results]
    figures = {"readings": args.count, "stations": args.stations,
               "instances": [{"instances": n, "seconds": round(s, 2), "per_s": round(r)} for n, s, r in results]}
    report(args, "ingest --instances", rows, figures,
           "ingest scaling: " + ", ".join(f"{n}x {r:,.0f}/s" for n, _, r in results))
    return 0
