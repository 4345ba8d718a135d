"""Real infrastructure for tests: fresh databases, private Mosquitto brokers, free ports."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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


ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


class ProductionMosquitto(PrivateMosquitto):
    """A private Mosquitto running ``config/mosquitto.conf`` itself (paths and port moved into a temp
    directory), with a password file of ``users`` and the ``acl`` text: what production enforces."""

    def __init__(self, directory: Path, users: dict[str, str], acl: str) -> None:
        super().__init__(directory)
        passwd, acl_file = directory / "passwd", directory / "acl"
        passwd.touch()
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True, capture_output=True)
        acl_file.write_text(acl)
        replacements = {
            r"^persistence_location .*$": f"persistence_location {directory / 'data'}/",
            r"^password_file .*$": f"password_file {passwd}",
            r"^acl_file .*$": f"acl_file {acl_file}",
            r"^listener 1883$": f"listener {self.port} 127.0.0.1",
            r"^log_dest syslog$": f"log_dest file {directory / 'mosquitto.log'}\nuser {getpass.getuser()}",
        }
        text = (ROOT / "config" / "mosquitto.conf").read_text()
        for pattern, value in replacements.items():
            text, found = re.subn(pattern, value, text, flags=re.M)
            assert found == 1, f"config/mosquitto.conf has no line {pattern!r}"
        self.config.write_text(text)
        self.acl_file = acl_file

    def url_for(self, user: str, password: str) -> str:
        """The MQTT URL of this broker for one user."""
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"

    def reload(self, acl: str) -> None:
        """Write a new ACL and reload it (SIGHUP), as docs/deploy.md says."""
        self.acl_file.write_text(acl)
        self.process.send_signal(signal.SIGHUP)


@contextlib.contextmanager
def production_mosquitto(users: dict[str, str], acl: str):
    """Run config/mosquitto.conf on a free port for a ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="ews-mosq-prod-") as tmp:
        broker = ProductionMosquitto(Path(tmp), users, acl).start()
        try:
            yield broker
        finally:
            broker.stop()


# The service's MQTT user on a production_mosquitto, and the production topic prefix.
SERVICE, SERVICE_PW = "ews-1", "service-secret"
PRODUCTION_PREFIX = "ews/v1"


def acl_from_cli(database_url: str) -> str:
    """What ``ews broker acl`` prints for the registry of ``database_url``, for the service's user ``SERVICE``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWS_")}
    env.update(EWS_DATABASE_URL=database_url, EWS_MQTT_URL=f"mqtt://{SERVICE}:{SERVICE_PW}@127.0.0.1:1883")
    done = subprocess.run([sys.executable, "-m", "service.cli", "broker", "acl"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll until ``condition()`` is truthy and return it; fail naming ``what`` after ``timeout`` (a safety net, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
