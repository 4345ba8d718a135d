"""``ews run`` as a child process: start with an environment, wait for ``/readyz``, kill or stop it, make tokens.

Used by ``ews bench`` (latency, fanout, api, history backlog) and by the fault drills
(``tests/support/service_process.py`` re-exports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from service.bench.common import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """One ``ews run`` subprocess; its logs go to ``directory/stdout.log`` and ``stderr.log``."""

    def __init__(self, directory: Path, *, database_url: str, mqtt_url: str, prefix: str = "ews/v1",
                 client_id: str | None = None, env: dict[str, str] | None = None, log_level: str = "WARNING",
                 role: str = "all") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
        self.env.update({
            "EWS_DATABASE_URL": database_url,
            "EWS_MQTT_URL": mqtt_url,
            "EWS_MQTT_TOPIC_PREFIX": prefix,
            "EWS_HTTP_HOST": "127.0.0.1",
            "EWS_HTTP_PORT": str(self.port),
            "EWS_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "EWS_SMS_PROVIDER": "console",
            "EWS_MQTT_CLIENT_ID": client_id or f"ews-svc-{uuid.uuid4().hex[:8]}",
            "EWS_LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env or {})
        self.role = role
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._tokens: dict[str, str] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> "ServiceProcess":
        """Start ``ews run``; by default wait until ``/readyz`` answers 200."""
        self.starts += 1
        with open(self.directory / "stdout.log", "ab") as out, open(self.directory / "stderr.log", "ab") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "service.cli", "run", "--role", self.role], env=self.env, cwd=ROOT,
                                            stdout=out, stderr=err)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for ``/readyz`` 200; return the seconds it took. Raise if the process exits."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.status("/readyz") == 200:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"ews run not ready after {timeout:g} s:\n{self.log_tail()}")

    def wait_http(self, timeout: float = 60.0) -> None:
        """Wait until the HTTP port accepts connections."""
        wait_for_port("127.0.0.1", self.port, timeout)

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"ews run exited (status {code}):\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, a power cut of the process)."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (the service finishes its batch and in-flight SMS); SIGKILL after ``timeout``."""
        if not self.alive:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str, timeout: float = 5.0) -> int | None:
        """The HTTP status of ``GET path``, or None when nothing answered."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ValueError):
            return None

    def text(self, path: str, timeout: float = 10.0) -> str:
        """The body of ``GET path`` (e.g. ``/metrics``)."""
        with urllib.request.urlopen(self.base_url + path, timeout=timeout) as answer:
            return answer.read().decode("utf-8")

    def token(self, role: str = "admin", stations: list[str] | tuple[str, ...] = ()) -> str:
        """A token for ``role`` (``ews token create``, cached per role); a gateway token names ``stations``."""
        if role not in self._tokens:
            name = f"bench-{role}-{uuid.uuid4().hex[:6]}"
            command = [sys.executable, "-m", "service.cli", "token", "create", "--role", role, "--name", name]
            for station in stations:
                command += ["--station", station]
            result = subprocess.run(command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"ews token create failed: {result.stderr}")
            self._tokens[role] = result.stdout.split()[0]
        return self._tokens[role]

    # -- diagnostics --------------------------------------------------------------------------

    def log_tail(self, chars: int = 3000) -> str:
        path = self.directory / "stderr.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def peak_rss_bytes(self) -> int | None:
        """The process's peak resident set size so far (``VmHWM``), while it runs."""
        if not self.alive:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
