"""``ews bench history``: the cost of judging a sample with 1 M / 10 M stored readings, and the peak
memory of ``ews run`` draining a 100,000-reading backlog. SQLite (the history is bulk-loaded with
the ``sqlite3`` module; the point is the size of the tables the ingest path touches)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from config.settings import load_settings
from service.bench.common import (PREFIX, Progress, bench_mosquitto, goal_note, note, percentile, prepare_database,
                                  reading_payload, report, station_id)
from service.bench.ingest_bench import backlog
from service.bench.mqtt_clients import create_session, publish_all
from service.bench.process import ServiceProcess
from service.bootstrap import bootstrap
from service.ingest import Message

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


def _judge_run(url: str, stations: int, samples: int, horizon: int, out) -> None:
    """In a fresh process: judge ``samples`` single-sample messages on ``url``; put the median ms on ``out``.

    ``horizon``: first give station 1 that many samples over the 6-hour horizon (``0``: the
    database's own history is the point, and the judged samples are spread over all stations).
    """
    services = bootstrap(load_settings({"EWS_DATABASE_URL": url, "EWS_MQTT_TOPIC_PREFIX": PREFIX}))
    now = datetime.now(timezone.utc)
    first = now - timedelta(minutes=10)  # the judged samples: in order after everything stored
    if horizon:
        step = timedelta(seconds=6 * 3600 / horizon)
        start = first - step * horizon
        for lo in range(0, horizon, 1000):
            body = [{"ts": (start + step * n).isoformat().replace("+00:00", "Z"), "values": {"water_level": 1.0}}
                    for n in range(lo, min(horizon, lo + 1000))]
            services.ingestor.ingest([Message(topic=f"{PREFIX}/stations/{station_id(0)}/readings",
                                              payload=json.dumps(body).encode(), received_at=now)])
        stations = 1
    # One new sample every millisecond of measurement time: the horizon keeps its length.
    costs = []
    for n in range(samples + stations * 5):
        s = n % stations
        message = Message(topic=f"{PREFIX}/stations/{station_id(s)}/readings",
                          payload=reading_payload(first + timedelta(milliseconds=n), 1.0 + (n % 11) * 0.01),
                          received_at=datetime.now(timezone.utc))
        began = time.perf_counter()
        services.ingestor.ingest([message])
        if n >= stations * 5:  # the first few of each station warm its held state and the caches
            costs.append((time.perf_counter() - began) * 1000)
    services.engine.dispose()
    out.put(percentile(costs, 50))


def alternating(cases: list[tuple[str, dict]], rounds: int, quiet: bool) -> dict[str, list[float]]:
    """Run each case ``rounds`` times, alternating, each in a fresh process; return each case's medians."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    medians: dict[str, list[float]] = {name: [] for name, _ in cases}
    progress = Progress("alternating fresh runs", rounds * len(cases), quiet)
    done = 0
    for _ in range(rounds):
        for name, kwargs in cases:
            out = context.Queue()
            worker = context.Process(target=_judge_run, kwargs={**kwargs, "out": out})
            worker.start()
            medians[name].append(out.get(timeout=1800))
            worker.join(60)
            done += 1
            progress.update(done, force=True)
    progress.done(done)
    return medians


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


def run(args) -> int:
    """The history mode: judging cost by horizon length and by stored readings (best of alternating fresh runs)."""
    if args.database != "sqlite":
        note("history: bulk loading is SQLite-only; running on SQLite", args.quiet)
    quiet = args.quiet
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="ews-bench-history-") as tmp:
        tmp_path = Path(tmp)
        # 1. The horizon: 36 samples (1 per 10 min, production) vs 3,600 (1 per 6 s) in the station's 6 hours.
        horizon_cases = _horizon_cases(args, tmp_path)
        note(f"judging {args.samples} samples with {' / '.join(str(h) for h in args.horizons)} samples in the horizon",
             quiet)
        by_horizon = alternating(horizon_cases, args.rounds, quiet)
        # 2. The stored readings: one database file per size (the larger one copied from the smaller, then grown).
        size_cases, largest = _size_cases(args, sizes, tmp_path)
        note(f"judging {args.samples} samples with {' / '.join(f'{s:,}' for s in sizes)} stored readings", quiet)
        by_size = alternating(size_cases, args.rounds, quiet)
        size_mb = largest.stat().st_size / 1e6
        rss = backlog_peak_rss(args.backlog, args.stations, tmp_path, quiet) if args.backlog else None
    _report(args, sizes, by_horizon, by_size, size_mb, rss)
    return 0


def _horizon_cases(args, tmp_path: Path) -> list[tuple[str, dict]]:
    """One single-station database per horizon length to compare."""
    cases = []
    for horizon in args.horizons:
        url = f"sqlite:///{tmp_path / f'horizon-{horizon}.db'}"
        prepare_database(url, 1).dispose()
        cases.append((f"horizon {horizon:,}", {"url": url, "stations": 1, "samples": args.samples, "horizon": horizon}))
    return cases


def _size_cases(args, sizes: list[int], tmp_path: Path) -> tuple[list[tuple[str, dict]], Path]:
    """One database per history size (each grown from a copy of the previous); the cases and the largest file."""
    stations, quiet = args.stations, args.quiet
    cases = []
    loaded, previous = 0, None
    newest_history = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    for size in sizes:
        path = tmp_path / f"history-{size}.db"
        if previous is None:
            prepare_database(f"sqlite:///{path}", stations).dispose()
        else:
            shutil.copyfile(previous, path)
        load_history(path, loaded, size, stations, newest_history, Progress(f"load {size:,} readings", size - loaded, quiet))
        loaded, previous = size, path
        cases.append((f"stored {size:,}", {"url": f"sqlite:///{path}", "stations": stations,
                                           "samples": args.samples, "horizon": 0}))
    return cases, previous


def _spread(medians: dict[str, list[float]]) -> tuple[dict[str, float], float]:
    """Each case's best median, and how far apart the best ones are (share of the lowest)."""
    best = {name: min(values) for name, values in medians.items()}
    low = min(best.values())
    return best, (max(best.values()) - low) / low


def _report(args, sizes: list[int], by_horizon: dict[str, list[float]], by_size: dict[str, list[float]],
            size_mb: float, rss: tuple | None) -> None:
    """Print the history figures (table or JSON)."""
    best_h, spread_h = _spread(by_horizon)
    best_s, spread_s = _spread(by_size)
    met_h, met_s = spread_h < 0.10, spread_s < 0.10
    figures = {"database": "sqlite", "samples_per_run": args.samples, "rounds": args.rounds,
               "horizon_medians_ms": by_horizon, "horizon_best_ms": best_h, "horizon_spread": round(spread_h, 3),
               "stored_medians_ms": by_size, "stored_best_ms": best_s, "stored_spread": round(spread_s, 3),
               "db_file_mb": round(size_mb), "goal_spread": 0.10, "history_goal_met": met_h and met_s}
    rows = [("database", f"SQLite, {size_mb:,.0f} MB at the largest size"),
            ("method", f"median of {args.samples} judged samples per run; best of {args.rounds} alternating runs, "
                       "each in a fresh process")]
    for name, values in by_horizon.items():
        rows.append((f"judge one sample, {name} samples", f"best {min(values):.3f} ms (runs: "
                                                        f"{', '.join(f'{v:.3f}' for v in values)})"))
    rows.append(("horizon: largest difference", f"{spread_h * 100:.1f} % {goal_note('< 10 %', met_h)}"))
    for name, values in by_size.items():
        rows.append((f"judge one sample, {name} readings", f"best {min(values):.3f} ms (runs: "
                                                         f"{', '.join(f'{v:.3f}' for v in values)})"))
    rows.append(("stored readings: largest difference",
                 f"{spread_s * 100:.1f} % {goal_note('< 10 %', met_s)}"))
    summary = (f"history: judge cost {' / '.join(f'{v:.3f}' for v in best_h.values())} ms with "
               f"{' / '.join(str(h) for h in args.horizons)} samples in the horizon ({spread_h * 100:.1f} % apart), "
               f"{' / '.join(f'{v:.3f}' for v in best_s.values())} ms with {' / '.join(f'{s:,}' for s in sizes)} "
               f"stored readings ({spread_s * 100:.1f} % apart)")
    if rss is not None:
        ready, peak, elapsed = rss
        met = peak <= 250 * 1024 * 1024
        figures.update(backlog=args.backlog, rss_ready_mb=round(ready / 2**20, 1), rss_peak_mb=round(peak / 2**20, 1),
                       backlog_drain_s=round(elapsed, 1), goal_rss_mb=250, rss_goal_met=met)
        rows.append((f"ews run draining {args.backlog:,} queued readings", f"{elapsed:.1f} s"))
        rows.append(("peak RSS (VmHWM)", f"{peak / 2**20:.0f} MB, {ready / 2**20:.0f} MB when listening "
                                         f"{goal_note('<= 250 MB', met)}"))
        summary += f"; backlog of {args.backlog:,}: peak RSS {peak / 2**20:.0f} MB"
    report(args, "history", rows, figures, summary)
