"""``ews bench MODE``: the performance benchmark (docs/performance.md).

Modes: ``ingest`` (MQTT drain rate vs. a bare paho client), ``latency`` (publish to SMS request),
``fanout`` (SMS rate against the provider limit), ``history`` (judging cost with 1 M / 10 M stored
readings, peak memory of a backlog drain), ``api`` (``GET /api/v1/stations`` under load).
Each prints a table and a final line of key figures (``--json``: one JSON document); a progress
bar goes to stderr.
"""

from __future__ import annotations

import argparse
import logging

from service.bench import api_bench, fanout_bench, history_bench, ingest_bench, latency_bench, scale_bench


def _modes() -> dict:
    """Each mode's module (``ingest --instances`` is scale_bench's)."""
    return {"ingest": ingest_bench, "latency": latency_bench, "fanout": fanout_bench, "history": history_bench,
            "api": api_bench}


def _sizes(text: str) -> list[int]:
    """``1M,10M`` -> [1000000, 10000000] (k and M suffixes)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        factor = 1_000_000 if part.endswith("m") else 1_000 if part.endswith("k") else 1
        out.append(int(float(part.rstrip("mk")) * factor))
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``ews bench`` modes and their options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="sqlite (a temporary file) or postgresql (a fresh database on EWS_BENCH_DATABASE_URL, "
                             "default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)")
    sub = parser.add_subparsers(dest="bench_mode", metavar="MODE", required=True)

    p = sub.add_parser("ingest", parents=[common], help="drain rate of a pre-queued backlog vs. a bare paho client")
    p.add_argument("--count", type=int, default=50_000, help="readings to queue (default 50,000)")
    p.add_argument("--stations", type=int, default=50)
    p.add_argument("--peer", action="store_true",
                   help="also drain with a bare paho client doing json.loads + a threshold compare, and print that ratio")
    p.add_argument("--profile", action="store_true", help="cProfile the ingest calls of the worker thread")
    p.add_argument("--profile-out", help="write the profile here instead of stdout")
    p.add_argument("--instances", help="e.g. 1,2,3: run that many `ews run --role ingest` processes on PostgreSQL "
                                       "with a shared subscription and report how the rate scales")

    p = sub.add_parser("latency", parents=[common], help="publish-to-SMS-request latency under a steady stream")
    p.add_argument("--rate", type=float, default=500.0, help="readings per second (default 500)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of streaming (default 30)")
    p.add_argument("--crossings", type=int, default=100,
                   help="threshold crossings spread over the run (default 100; each station up to 3: WASPADA, SIAGA, AWAS)")
    p.add_argument("--stations", type=int, default=50)
    p.add_argument("--backlog", type=int, default=0,
                   help="first queue this many old readings on the backlog topic for the service's backlog session, "
                        "so the crossings happen while it drains")

    p = sub.add_parser("fanout", parents=[common], help="SMS fan-out rate against the provider limit")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--limit", type=float, default=200.0, help="EWS_SMS_MAX_PER_SECOND (default 200)")
    p.add_argument("--latency", type=float, default=0.05, help="provider latency in seconds (default 0.05)")

    p = sub.add_parser("history", parents=[common], help="judging cost vs. stored readings; peak RSS of a backlog drain")
    p.add_argument("--sizes", type=_sizes, default=_sizes("1M,10M"), help="stored readings, e.g. 1M,10M (default)")
    p.add_argument("--samples", type=int, default=2000, help="samples judged per run (default 2000)")
    p.add_argument("--horizons", type=_sizes, default=_sizes("36,3600"),
                   help="samples in the station's 6-hour horizon to compare (default 36,3600)")
    p.add_argument("--rounds", type=int, default=3, help="alternating fresh-process runs per case; the best counts")
    p.add_argument("--backlog", type=int, default=100_000, help="backlog drained for the memory figure (0: skip)")
    p.add_argument("--stations", type=int, default=50)

    p = sub.add_parser("api", parents=[common], help="GET /api/v1/stations latency under concurrent clients")
    p.add_argument("--stations", type=int, default=100)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=200, help="requests per client (default 200)")


def command(args: argparse.Namespace) -> int:
    """Run one benchmark mode."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.bench_mode == "ingest" and getattr(args, "instances", None):
        return int(scale_bench.run(args) or 0)
    module = _modes()[args.bench_mode]
    return int(module.run(args) or 0)
