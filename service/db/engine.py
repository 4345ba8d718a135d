"""Engine factory: SQLite in WAL mode with a busy timeout, or PostgreSQL through psycopg 3."""

from __future__ import annotations

import contextlib
import contextvars
import time

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine

from service.db.turns import WriteTurns

BUSY_TIMEOUT_S = 30
# A pooled PostgreSQL connection back in the pool for longer than this is pinged before it is lent
# again; one given back a moment ago is lent as it is (SQLAlchemy's pool_pre_ping pinged at every
# checkout: a round trip per ingest batch).
PING_IDLE_S = 1.0

# Set while serving a request that only reads (GET, HEAD): SQLite then begins its transactions
# DEFERRED, so readers run side by side in WAL mode instead of queueing for the write lock.
_READ_ONLY = contextvars.ContextVar("ews_read_only", default=False)


def begin_reads_only() -> contextvars.Token:
    """From now on in this context, SQLite transactions begin DEFERRED (a write still works, and waits its turn)."""
    return _READ_ONLY.set(True)


def end_reads_only(token: contextvars.Token) -> None:
    """Undo ``begin_reads_only``."""
    _READ_ONLY.reset(token)


@contextlib.contextmanager
def reads_only():
    """A block whose SQLite transactions begin DEFERRED: reads that need not queue for the write lock."""
    token = begin_reads_only()
    try:
        yield
    finally:
        end_reads_only(token)


def make_engine(url: str, *, connect_timeout_s: int | None = None, **kwargs) -> Engine:
    """Create the engine for ``url`` with the settings this service relies on.

    ``connect_timeout_s``: give up connecting to PostgreSQL after that long (SQLite waits its busy timeout).
    """
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    if connect_timeout_s is not None:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "connect_timeout": connect_timeout_s}
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        ping_when_idle(engine, PING_IDLE_S)
    return engine


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection at checkout only if it was back in the pool for more than ``idle_s``.

    A dead one (the server restarted, or ended an idle session) is replaced as ``pool_pre_ping``
    would: every connection pooled before it is dropped and a new one is lent.
    """
    @event.listens_for(engine, "checkin")
    def _given_back(_dbapi_conn, record):
        if record is not None:
            record.info["ews_given_back"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _lent(dbapi_conn, record, _proxy):
        given_back = record.info.get("ews_given_back")
        if given_back is None or time.monotonic() - given_back <= idle_s:
            return  # a fresh connection, or one in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)  # the dialect's own ping, as pool_pre_ping sends it
        except engine.dialect.loaded_dbapi.Error as gone:
            raise exc.InvalidatePoolError() from gone  # the pool drops its connections and lends a new one


def _sqlite_engine(url: str, **kwargs) -> Engine:
    """SQLite tuned for one writer and many readers (tech-notes section 6.2); this process's writers take turns."""
    turns = WriteTurns(BUSY_TIMEOUT_S)
    # As many pooled connections as threads use at once (waitress's 16, ingest, dispatch, jobs): beyond
    # the pool, each checkout opened a new SQLite connection and ran its PRAGMAs again.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("connect_args", {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False,
                                       "factory": turns.connection_class()})
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event below issue BEGIN
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: no corruption, at most the last commit on power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: avoids SQLITE_BUSY on a read-to-write upgrade.
        # Read-only requests begin DEFERRED so they never wait behind ingest or each other.
        if _READ_ONLY.get():
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        turns.take(dbapi_conn)  # given back by the connection's commit, rollback or close
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.give_back(dbapi_conn)
            raise

    return engine


def is_sqlite(engine: Engine) -> bool:
    """True for a SQLite engine."""
    return engine.dialect.name == "sqlite"
