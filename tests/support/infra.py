"""Real infrastructure for tests: fresh databases, private Mosquitto brokers, free ports."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.bench.common import MOSQUITTO, PrivateMosquitto, free_port, private_mosquitto, wait_for_port  # noqa: F401


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


