"""Real infrastructure for tests: fresh databases, private Mosquitto brokers, free ports."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


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


def postgres_base_url() -> str | None:
    """The PostgreSQL server tests may use (``EWS_TEST_DATABASE_URL``), or None."""
    return os.environ.get("EWS_TEST_DATABASE_URL") or None


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path):
    """Yield the URL of a new, empty database of ``kind`` (sqlite or postgresql); drop it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'ews-{uuid.uuid4().hex[:8]}.db'}"
        return
    base = postgres_base_url()
    name = f"ews_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
