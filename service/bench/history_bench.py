"""``ews bench history``: the cost of judging a sample with 1 M / 10 M stored readings, and the peak
memory of ``ews run`` draining a 100,000-reading backlog. SQLite (the history is bulk-loaded with
the ``sqlite3`` module; the point is the size of the tables the ingest path touches)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from service.bench.common import (
    Progress,
    bench_mosquitto,
    create_session,
    note,
    percentile,
    prepare_database,
    publish_all,
    reading_payload,
    report,
    station_id,
)
from service.bench.ingest_bench import backlog
from service.bench.process import ServiceProcess

PREFIX = "ews/v1"
CHUNK = 200_000


def _sqlite_ts(ts: datetime) -> str:
    # The text form SQLAlchemy's SQLite DateTime stores (UTC, naive).
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")


def load_history(path: Path, start_row: int, end_row: int, stations: int, newest: datetime, progress: Progress) -> None:
    """Bulk-insert readings ``start_row``..``end_row`` (1 per station-minute, going back from ``newest``)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    received = _sqlite_ts(newest)

    def rows(lo: int, hi: int):
        for n in range(lo, hi):
            s, minute = n % stations, n // stations
            ts = newest - timedelta(minutes=minute)
            yield station_id(s), "water_level", _sqlite_ts(ts), 1.0 + (n % 97) / 100, received

    for lo in range(start_row, end_row, CHUNK):
        hi = min(end_row, lo + CHUNK)
        db.execute("BEGIN")
        db.executemany("INSERT INTO readings (station_id, metric, ts, value, received_at) VALUES (?, ?, ?, ?, ?)",
                       rows(lo, hi))
        db.execute("COMMIT")
        progress.update(hi - start_row)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    progress.done()


def judge_cost(services, stations: int, samples: int, start: datetime) -> list[float]:
    """Ingest ``samples`` single-sample messages, one transaction each; return each call's milliseconds."""
    from service.ingest import Message

    costs = []
    for n in range(samples):
        s = n % stations
        ts = start + timedelta(seconds=10 * (n // stations))
        message = Message(topic=f"{PREFIX}/stations/{station_id(s)}/readings",
                          payload=reading_payload(ts, 1.0 + (n % 11) * 0.01), received_at=datetime.now(timezone.utc))
        began = time.perf_counter()
        services.ingestor.ingest([message])
        costs.append((time.perf_counter() - began) * 1000)
    return costs


def backlog_peak_rss(count: int, stations: int, directory: Path, quiet: bool) -> tuple[int, int, float]:
    """Queue ``count`` readings for ``ews run``'s session, start it, wait for all; return (RSS at ready, peak RSS, s)."""
    database_url = f"sqlite:///{directory / 'backlog.db'}"
    prepare_database(database_url, stations).dispose()
    with bench_mosquitto() as broker:
        client_id = "ews-bench-backlog"
        create_session(broker.url, client_id, f"{PREFIX}/stations/+/readings")
        publish_all(broker.url, backlog(count, stations, seed=2), count, Progress("queue backlog", count, quiet))
        service = ServiceProcess(directory / "svc", database_url=database_url, mqtt_url=broker.url, prefix=PREFIX,
                                 client_id=client_id)
        started = time.monotonic()
        service.start(wait_ready=False)
        service.wait_http(60)
        ready_rss = service.peak_rss_bytes() or 0
        progress = Progress("ews run drains", count, quiet)
        db = directory / "backlog.db"
        stored = 0
        try:
            while stored < count:
                time.sleep(0.5)
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
                    stored = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
                progress.update(stored)
                if time.monotonic() - started > 1800:
                    raise TimeoutError(f"backlog not drained: {stored} of {count}")
            elapsed = time.monotonic() - started
            progress.done(stored)
            peak = service.peak_rss_bytes() or 0
        finally:
            service.stop()
    return ready_rss, peak, elapsed


def _measure(args) -> tuple[list[dict], float, tuple | None]:
    """Judge cost at each history size (and the backlog's RSS if asked): results, database MB, RSS figures."""
    from config.settings import load_settings
    from service.bootstrap import bootstrap

    stations, quiet = args.stations, args.quiet
    sizes = sorted(args.sizes)
    results = []
    with tempfile.TemporaryDirectory(prefix="ews-bench-history-") as tmp:
        path = Path(tmp) / "history.db"
        url = f"sqlite:///{path}"
        prepare_database(url, stations).dispose()
        now = datetime.now(timezone.utc).replace(microsecond=0)
        newest_history = now - timedelta(days=2)
        services = bootstrap(load_settings({"EWS_DATABASE_URL": url, "EWS_MQTT_TOPIC_PREFIX": PREFIX}))
        # Warm the station cache and engine state (a station's first sample does more work).
        cursor = now - timedelta(hours=20)
        judge_cost(services, stations, stations * 5, cursor)
        cursor += timedelta(seconds=10 * 5)
        loaded = 0
        for size in sizes:
            services.engine.dispose()
            load_history(path, loaded, size, stations, newest_history, Progress(f"load {size:,} readings", size - loaded, quiet))
            loaded = size
            note(f"judging {args.samples} samples with {size:,} stored readings", quiet)
            costs = judge_cost(services, stations, args.samples, cursor)
            cursor += timedelta(seconds=10 * (args.samples // stations + 1))
            results.append({"stored": size, "mean_ms": sum(costs) / len(costs), "p50_ms": percentile(costs, 50),
                            "p99_ms": percentile(costs, 99)})
        services.engine.dispose()
        size_mb = path.stat().st_size / 1e6
        rss = None
        if args.backlog:
            rss = backlog_peak_rss(args.backlog, stations, Path(tmp), quiet)
    return results, size_mb, rss


def run(args) -> int:
    """The history mode."""
    if args.database != "sqlite":
        note("history: bulk loading is SQLite-only; running on SQLite", args.quiet)
    results, size_mb, rss = _measure(args)
    # The median: the mean also carries SQLite's WAL checkpoints, which come every ~1000 pages whatever the size.
    base = results[0]["p50_ms"]
    spread = max(abs(r["p50_ms"] - base) / base for r in results)
    history_met = spread < 0.10
    figures = {"database": "sqlite", "samples_per_size": args.samples, "results": results,
               "db_file_mb": round(size_mb), "spread": round(spread, 3), "goal_spread": 0.10,
               "history_goal_met": history_met}
    rows = [("database", f"SQLite, {size_mb:,.0f} MB at the end")]
    for r in results:
        rows.append((f"judge one sample, {r['stored']:,} stored",
                     f"mean {r['mean_ms']:.2f} ms, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"))
    rows.append(("median: largest difference from the smallest size", f"{spread * 100:.1f} % (goal < 10 %: "
                                                                f"{'met' if history_met else 'MISSED'})"))
    costs_text = " / ".join(f"{r['p50_ms']:.2f}" for r in results)
    sizes_text = " / ".join(f"{r['stored']:,}" for r in results)
    summary = f"history: median judge cost {costs_text} ms at {sizes_text} readings ({spread * 100:.1f} % apart)"
    if rss is not None:
        ready, peak, elapsed = rss
        met = peak <= 250 * 1024 * 1024
        figures.update(backlog=args.backlog, rss_ready_mb=round(ready / 2**20, 1), rss_peak_mb=round(peak / 2**20, 1),
                       backlog_drain_s=round(elapsed, 1), goal_rss_mb=250, rss_goal_met=met)
        rows.append((f"ews run draining {args.backlog:,} queued readings", f"{elapsed:.1f} s"))
        rows.append(("peak RSS (VmHWM)", f"{peak / 2**20:.0f} MB, {ready / 2**20:.0f} MB when listening "
                                         f"(goal <= 250 MB: {'met' if met else 'MISSED'})"))
        summary += f"; backlog of {args.backlog:,}: peak RSS {peak / 2**20:.0f} MB"
    report(args, "history", rows, figures, summary)
    return 0
