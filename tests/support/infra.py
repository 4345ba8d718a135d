"""Real infrastructure for tests: fresh databases, private Mosquitto brokers, free ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

# The benchmark and the tests share one implementation of each (service/ must not import tests/).
from service.bench.common import (  # noqa: F401  (re-exported for the tests)
    MOSQUITTO,
    PrivateMosquitto,
    bench_database,
    free_port,
    private_mosquitto,
    wait_for_port,
)


def postgres_base_url() -> str | None:
    """The PostgreSQL server tests may use (``EWS_TEST_DATABASE_URL``), or None."""
    return os.environ.get("EWS_TEST_DATABASE_URL") or None


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path):
    """Yield the URL of a new, empty database of ``kind`` (sqlite or postgresql); drop it afterwards."""
    with bench_database(kind, tmp_path, base=postgres_base_url(), prefix="ews_test") as url:
        yield url




def terminate(process, timeout: float = 30.0) -> None:
    """SIGTERM a child process we started and wait for it; SIGKILL it after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll until ``condition()`` is truthy and return it; fail naming ``what`` after ``timeout`` (a safety net, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
