"""Shared pieces of ``ews bench``: progress bar, tables, a private Mosquitto, bench databases and stations.

Nothing here imports from ``tests/``: the benchmark is part of the installed service.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from alerts.errors import CommandFailed
from alerts.station_rules import rules_from_overrides
from alerts.times import rfc3339
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.schema import stations as stations_table, subscribers
from service.station_rules import default_rules_doc

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PREFIX = "ews/v1"  # the topic prefix of every mode's service and gateways


# -- output ---------------------------------------------------------------------------------------


class Progress:
    """A plain-text progress bar on stderr (one line, rewritten with ``\\r``); silent when ``quiet``."""

    def __init__(self, label: str, total: int, quiet: bool = False, width: int = 30) -> None:
        self.label, self.total, self.quiet, self.width = label, max(1, total), quiet, width
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        """Redraw at most ten times a second."""
        now = time.monotonic()
        if self.quiet or (not force and now - self._last < 0.1):
            return
        self._last = now
        share = min(1.0, done / self.total)
        bar = "#" * int(share * self.width)
        sys.stderr.write(f"\r{self.label:<28} [{bar:<{self.width}}] {done:>9,}/{self.total:,} {now - self.started:6.1f}s")
        sys.stderr.flush()

    def done(self, done: int | None = None) -> None:
        """Draw the final state and end the line."""
        self.update(self.total if done is None else done, force=True)
        if not self.quiet:
            sys.stderr.write("\n")
            sys.stderr.flush()


def note(text: str, quiet: bool = False) -> None:
    """A status line on stderr."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table on stdout."""
    width = max(len(name) for name, _ in rows)
    print(title)
    print("-" * (width + 3 + max(len(v) for _, v in rows)))
    for name, value in rows:
        print(f"{name:<{width}}   {value}")


def report(args, mode: str, rows: list[tuple[str, str]], figures: dict, summary: str) -> None:
    """Print the mode's table and its key-figures line, or (``--json``) one JSON document."""
    figures = {"mode": mode, **figures, "machine": machine()}
    if getattr(args, "json", False):
        print(json.dumps(figures, indent=2, default=str))
        return
    print_table(f"ews bench {mode}", rows)
    print(summary)


def goal_note(condition: str, met: bool) -> str:
    """How a table row says whether its figure meets its goal: ``(goal <= 50 ms: met)`` or ``...: MISSED)``."""
    return f"(goal {condition}: {'met' if met else 'MISSED'})"


def verdict(met: bool) -> str:
    """How a key-figures line says it: ``goal met`` or ``goal missed``."""
    return "goal met" if met else "goal missed"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": memory, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# -- network and brokers --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


class PrivateMosquitto:
    """A Mosquitto of our own on a free port, with persistence, that a test may stop and start."""

    def __init__(self, directory: Path, max_inflight: int = 1000, max_queued: int = 1_000_000) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.port = free_port()
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        (directory / "data").mkdir(exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    # As root, mosquitto drops to user "mosquitto", which cannot write the
                    # persistence file or the log into our private temp directory: stay who we are.
                    f"user {getpass.getuser()}",
                    "persistence true",
                    f"persistence_location {directory / 'data'}/",
                    "autosave_interval 1",
                    "autosave_on_changes false",
                    f"max_inflight_messages {max_inflight}",
                    f"max_queued_messages {max_queued}",
                    "max_queued_bytes 0",
                    # The payload bound of config/mosquitto.conf (spec section 1: at most 256 KiB).
                    "message_size_limit 262144",
                    "max_packet_size 263168",
                    f"log_dest file {directory / 'mosquitto.log'}",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The MQTT URL of this broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "PrivateMosquitto":
        """Start (or restart) the broker and wait until it listens."""
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM: it saves its persistence file)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self.process = None


@contextlib.contextmanager
def private_mosquitto(**kwargs):
    """Run a private Mosquitto for the duration of a ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="ews-mosq-") as tmp:
        broker = PrivateMosquitto(Path(tmp), **kwargs).start()
        try:
            yield broker
        finally:
            broker.stop()


@contextlib.contextmanager
def bench_mosquitto(**kwargs):
    """A private Mosquitto for a ``with`` block (the benchmark keeps a larger queue)."""
    kwargs.setdefault("max_queued", 5_000_000)
    with private_mosquitto(**kwargs) as broker:
        yield broker


# -- databases ------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(kind: str, directory: Path, *, base: str | None = None, prefix: str = "ews_bench"):
    """Yield the URL of a new empty database: SQLite in ``directory``, or PostgreSQL on ``base``
    (default EWS_BENCH_DATABASE_URL), created now and dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{prefix}-{uuid.uuid4().hex[:8]}.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = base or os.environ.get("EWS_BENCH_DATABASE_URL") or PG_DEFAULT
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def workspace(mode: str, database: str):
    """What one run of ``mode`` works in, removed afterwards: ``(scratch directory, URL of a new database of kind
    ``database``, private Mosquitto)``."""
    with tempfile.TemporaryDirectory(prefix=f"ews-bench-{mode}-") as tmp, \
            bench_database(database, Path(tmp)) as database_url, bench_mosquitto() as broker:
        yield Path(tmp), database_url, broker


def station_id(i: int) -> str:
    """The id of bench station ``i`` (0-based)."""
    return f"BENCH-{i + 1:03d}"


def station_area(i: int) -> dict:
    """Each bench station warns its own desa, so one subscriber can stand for one station."""
    return {"kecamatan": "Bench", "desa": f"Desa {i + 1:03d}"}


def bench_station_rows(count: int, now: datetime, *, rules_overrides: dict | None = None) -> list[dict]:
    """``count`` water-level stations with the default rules (waspada 2.0, siaga 2.5, awas 3.0 m)."""
    rules = rules_from_overrides(default_rules_doc(), rules_overrides)
    return [
        {
            "id": station_id(i), "name": f"Pos TMA Bench {i + 1:03d}", "river": "Sungai Bench",
            "kecamatan": "Bench", "desa": f"Desa {i + 1:03d}", "lat": -2.5 - i * 0.001, "lon": 121.0 + i * 0.001,
            "mm_per_tip": None, "metrics": ["water_level", "battery", "signal"], "areas": [station_area(i)],
            "expected_interval_s": 60, "plausible": {"water_level": [0, 10]}, "downstream": [], "rules": rules,
            "created_at": now, "updated_at": now,
        }
        for i in range(count)
    ]


def prepare_database(url: str, stations: int, *, rules_overrides: dict | None = None):
    """Migrate ``url`` and add the bench stations; return the engine."""
    from sqlalchemy import insert


    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(stations_table), bench_station_rows(stations, utc_now(), rules_overrides=rules_overrides))
    return engine


def add_subscribers(engine, areas: list[dict], per_area: int = 1, first_phone: int = 0) -> list[str]:
    """Residents: ``per_area`` subscribers in each area, phones +62812 plus a running number; return the phones."""
    from sqlalchemy import insert


    now = utc_now()
    rows, phones = [], []
    number = first_phone
    for area in areas:
        for _ in range(per_area):
            phone = f"+62812{number:08d}"
            number += 1
            phones.append(phone)
            rows.append({"phone": phone, "name": None, "language": "id", "role": "resident", "areas": [area],
                         "opted_out": False, "source": "api", "created_at": now, "updated_at": now})
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(subscribers), rows[start:start + 5000])
    return phones


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def reading_payload(ts: datetime, value: float, seq: int | None = None) -> bytes:
    """One sample as a gateway sends it."""
    body = {"ts": rfc3339(ts), "values": {"water_level": value}}
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def twilio_sink():
    """``FakeTwilio`` from the test sink (sinks/twilio.py); a one-line error where it is left out (the image)."""
    try:
        from sinks.twilio import FakeTwilio
    except ModuleNotFoundError as exc:  # said, not swallowed: the mode cannot run here
        raise CommandFailed("this bench mode needs the Twilio test sink (sinks/), which the Docker image leaves out; "
                            "run ews bench from a checkout (pip install -e .)") from exc
    return FakeTwilio
