"""A SQLite engine's writers in one process queue for the write lock and always hand it on (service/db/turns.py)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from service.db.engine import make_engine


@pytest.fixture
def engine(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    yield engine
    engine.dispose()


def _write(engine, value: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t (x) VALUES (:x)"), {"x": value})


def _in_thread(fn) -> None:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "a writer waited for a turn nobody held"


def test_many_writers_at_once_all_commit(engine):
    threads = [threading.Thread(target=_write, args=(engine, i)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT x FROM t")).scalars()) == list(range(40))


def test_a_rolled_back_transaction_hands_the_turn_on(engine):
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))
            raise RuntimeError("the batch failed")
    _in_thread(lambda: _write(engine, 2))
    with engine.connect() as conn:
        assert list(conn.execute(sa.text("SELECT x FROM t")).scalars()) == [2]


def test_a_connection_closed_in_a_transaction_hands_the_turn_on(engine):
    conn = engine.connect()
    conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))  # autobegun: holds the turn
    conn.close()  # returned to the pool unfinished: rolled back
    _in_thread(lambda: _write(engine, 2))
    conn = engine.connect()
    conn.execute(sa.text("INSERT INTO t (x) VALUES (4)"))
    conn.connection.dbapi_connection.close()  # the DBAPI connection closed outright (a lost file handle)
    conn.invalidate()
    _in_thread(lambda: _write(engine, 3))
    with engine.connect() as conn:
        assert list(conn.execute(sa.text("SELECT x FROM t ORDER BY x")).scalars()) == [2, 3]


def test_a_writer_waits_for_the_open_transaction_then_goes_next(engine):
    inside, done = threading.Event(), threading.Event()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t (x) VALUES (1)"))
        thread = threading.Thread(target=lambda: (inside.set(), _write(engine, 2), done.set()), daemon=True)
        thread.start()
        inside.wait(10)
        assert not done.is_set()  # it cannot write while this transaction holds the lock
    thread.join(20)
    assert done.is_set()
    with engine.connect() as conn:
        assert list(conn.execute(sa.text("SELECT x FROM t ORDER BY x")).scalars()) == [1, 2]
