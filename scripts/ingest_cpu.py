"""CPU (or instructions) of ``Ingestor.ingest`` on the ``ews bench ingest`` backlog, without a broker.

Usage: ``.venv/bin/python scripts/ingest_cpu.py [STATIONS] [COUNT]`` (SQLite, batches of 1,000).
The rates of ``ews bench ingest`` move with the load of a shared machine; the work per message
does not. Under ``valgrind --tool=callgrind --instr-atstart=no`` with ``EWS_CALLGRIND=1`` only
the drain is counted (the script switches instrumentation on at its start), so two versions can
be compared by the instructions they execute (docs/performance.md).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time


def _instrument() -> None:
    # callgrind_control talks to this very process: wait (sleeping, so valgrind can answer) until it did.
    subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
    until = time.time() + 3
    while time.time() < until:
        time.sleep(0.05)


def main(stations: int, count: int) -> None:
    """Drain ``count`` bench readings from ``stations`` through a fresh SQLite database; print the CPU."""
    from config.settings import load_settings
    from service.bench.common import PREFIX, prepare_database, utc_now
    from service.bench.ingest_bench import backlog
    from service.bootstrap import bootstrap
    from service.heap import collector_waits, settle_after_startup
    from service.ingest import Message

    url = f"sqlite:///{tempfile.mkdtemp(prefix='ews-ingest-cpu-')}/ews.db"
    prepare_database(url, stations).dispose()
    services = bootstrap(load_settings({"EWS_DATABASE_URL": url, "EWS_MQTT_TOPIC_PREFIX": PREFIX}))
    now = utc_now()
    messages = [Message(topic=topic, payload=payload, received_at=now) for topic, payload in backlog(count, stations)]
    settle_after_startup()
    if os.environ.get("EWS_CALLGRIND"):
        _instrument()
    started = time.process_time()
    for start in range(0, count, 1000):
        with collector_waits():  # as the MQTT worker does around a batch
            services.ingestor.ingest(messages[start:start + 1000])
    cpu = time.process_time() - started
    services.engine.dispose()
    gc.collect()
    print(f"{count} readings, {stations} stations: {cpu:.2f} s CPU = {cpu / count * 1e6:.1f} us per reading")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50, int(sys.argv[2]) if len(sys.argv) > 2 else 50000)
