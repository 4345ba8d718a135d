"""A PostgreSQL connection is pinged at checkout only after it rested in the pool (service/db/engine.py)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from service.db import engine as db_engine
from tests.support.infra import fresh_database, postgres_base_url

IDLE_S = 0.3


@pytest.fixture
def engine(tmp_path, monkeypatch):
    if not postgres_base_url():
        pytest.skip("PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")
    monkeypatch.setattr(db_engine, "PING_IDLE_S", IDLE_S)
    with fresh_database("postgresql", tmp_path) as url:
        engine = db_engine.make_engine(url, pool_size=1, max_overflow=0)
        pings = []
        ping = engine.dialect.do_ping
        # A spy on SQLAlchemy's own ping: the pings still reach the server.
        monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(1) or ping(conn))
        engine.pings = pings
        yield engine
        engine.dispose()


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_given_back_a_moment_ago_is_lent_without_a_ping(engine):
    first = _backend(engine)
    assert [_backend(engine) for _ in range(5)] == [first] * 5
    assert engine.pings == []


def test_a_rested_connection_is_pinged_and_a_dead_one_replaced(engine):
    first = _backend(engine)
    time.sleep(IDLE_S + 0.1)
    assert _backend(engine) == first
    assert len(engine.pings) == 1
    with sa.create_engine(engine.url, poolclass=sa.pool.NullPool).connect() as other:
        assert other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
    time.sleep(IDLE_S + 0.1)
    replaced = _backend(engine)  # the ping found it gone: a new connection, no error
    assert replaced != first
    assert len(engine.pings) == 2
