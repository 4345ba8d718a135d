"""``ews run`` as a subprocess for drills and end-to-end tests (the implementation lives in
``service/bench/process.py``, which ``ews bench`` uses too), plus a private PostgreSQL cluster
that a drill may stop and start."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import requests

from service.bench.process import ServiceProcess
from tests.support.infra import free_port, wait_for_port

__all__ = ["ServiceProcess", "PrivatePostgres", "PG_BIN", "sqlite_count"]

PG_BIN = next((p for p in ("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/14/bin")
               if os.path.exists(f"{p}/initdb")), None) or (os.path.dirname(shutil.which("initdb")) if shutil.which("initdb") else None)


def sqlite_count(database_url: str, sql: str, *args) -> int:
    """One number from a read-only query on a SQLite database URL (the service keeps writing)."""
    path = database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql, args).fetchone()[0]


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temp dir, a free port) that a drill may stop and start.

    initdb refuses to run as root, so as root the cluster runs as the ``postgres`` user.
    """

    def __init__(self, directory: Path) -> None:
        if PG_BIN is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(directory, "postgres")
            os.chmod(directory, 0o700)

    def _run(self, *command: str, timeout: float = 120) -> None:
        subprocess.run([*self._as_user, *command], check=True, capture_output=True, timeout=timeout)

    def init(self) -> "PrivatePostgres":
        self._run(f"{PG_BIN}/initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> "PrivatePostgres":
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "pg.log"),
                  "-w", "start")
        wait_for_port("127.0.0.1", self.port, 30)
        return self

    def stop(self) -> None:
        self._run(f"{PG_BIN}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)


@contextlib.contextmanager
def private_postgres():
    """A running private PostgreSQL for a ``with`` block (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="ews-pg-") as tmp:
        cluster = PrivatePostgres(Path(tmp)).init().start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop()


class ProcessApi:
    """The staff API of a ``ServiceProcess`` over HTTP, as a client with a token of each role calls it."""

    def __init__(self, service: ServiceProcess) -> None:
        self.base = f"{service.base_url}/api/v1"
        self.service = service

    def call(self, method: str, path: str, role: str = "admin", **kwargs):
        headers = {"Authorization": f"Bearer {self.service.token(role)}"}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def json(self, method: str, path: str, body=None, role: str = "admin"):
        """The decoded JSON answer (None when empty); an error status raises."""
        answer = self.call(method, path, role, json=body)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def items(self, path: str) -> list:
        answer = self.call("GET", path)
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]
