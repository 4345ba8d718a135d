"""The README's first start on a machine whose MQTT port is taken (a laptop that runs Mosquitto).

With ``EWS_MQTT_URL`` unset, ``ews run`` moves its embedded broker to the next free port, says
so in one line and records it in the database; ``ews simulate`` and ``ews gateway``, started
the README's way (no broker setting, the same folder and so the same ``ews.db``), find it there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.support.infra import free_port, wait_until

pytestmark = pytest.mark.slow
README_PORT = 1883  # the embedded broker's default, as the README runs it


@contextlib.contextmanager
def port_taken(port: int):
    """A listener on ``port`` unless one is there already (Mosquitto usually is, in CI)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen()
    except OSError:
        listener.close()
        listener = None  # taken already: exactly the situation under test
    try:
        yield
    finally:
        if listener is not None:
            listener.close()


def readme_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh terminal: no EWS_* setting but ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
    return {**clean, "PYTHONUNBUFFERED": "1", **extra}


def ews(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=folder, env=readme_env(),
                          capture_output=True, text=True, timeout=timeout)


def readings(folder: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{folder / 'ews.db'}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute("SELECT count(*) FROM readings").fetchone()[0]


def stored_at(folder: Path, station_id: str, ts: datetime) -> list[float]:
    """The values stored for ``station_id`` with the timestamp ``ts``."""
    with contextlib.closing(sqlite3.connect(f"file:{folder / 'ews.db'}?mode=ro", uri=True, timeout=30)) as db:
        rows = db.execute("SELECT ts, value FROM readings WHERE station_id = ?", (station_id,)).fetchall()
    return [value for stamp, value in rows if datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc) == ts]


def ready(process: subprocess.Popen, http_port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"ews run exited:\n{log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_the_readme_start_works_when_the_mqtt_port_is_taken(tmp_path):
    folder = tmp_path / "laptop"
    folder.mkdir()
    http_port = free_port()  # the only difference from the README: 8080 may be taken on a test machine
    log = folder / "stderr.log"
    with port_taken(README_PORT), open(log, "wb") as stderr:
        # README: `EWS_SEED=luwu-timur .venv/bin/ews run`, in a folder of its own.
        run = subprocess.Popen([sys.executable, "-m", "service.cli", "run"], cwd=folder, stderr=stderr,
                               stdout=subprocess.DEVNULL,
                               env=readme_env(EWS_SEED="luwu-timur", EWS_HTTP_PORT=str(http_port)))
        try:
            wait_until(lambda: ready(run, http_port, log), 90, "ews run to be ready")
            moved = [line for line in log.read_text().splitlines() if "is taken" in line]
            assert len(moved) == 1, log.read_text()[-3000:]
            port = int(moved[0].split("listening on ")[1].split()[0])
            assert port != README_PORT

            # README: `.venv/bin/ews simulate --scenario ...` in another terminal, same folder.
            simulated = ews(folder, "simulate", "--scenario", "calm", "--speed", "max", "--quiet")
            assert simulated.returncode == 0, simulated.stderr
            assert f"127.0.0.1:{port}" in simulated.stderr, simulated.stderr  # it says which broker it found
            wait_until(lambda: readings(folder), 60, "the simulated readings to be stored")

            now = datetime.now(timezone.utc).replace(microsecond=0)
            (folder / "logger.csv").write_text(f"ts,water_level\n{now.isoformat().replace('+00:00', 'Z')},1.23\n",
                                               encoding="utf-8")
            gateway = ews(folder, "gateway", "--station", "PKR-LASKAP", "--source", "csv:logger.csv", timeout=120)
            assert gateway.returncode == 0, gateway.stderr
            # The gateway's own reading, not a count: the simulator's last readings may still be arriving.
            wait_until(lambda: stored_at(folder, "PKR-LASKAP", now) == [1.23], 60, "the gateway's reading to be stored")

            # The running app's OpenAPI document passes the outside validator too.
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/openapi.json", timeout=30) as answer:
                validate(json.loads(answer.read()))
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(60)
    # A clean stop removes the record: a later simulate does not chase a broker that is gone.
    with contextlib.closing(sqlite3.connect(str(folder / "ews.db"))) as db:
        assert db.execute("SELECT count(*) FROM local_endpoints").fetchone()[0] == 0
