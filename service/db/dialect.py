"""Where PostgreSQL and SQLite differ for us, in one place: insert-or-ignore/upsert, row locks, claims, serialising.

PostgreSQL may be shared by several instances, so it locks rows (``FOR UPDATE``), lets
claimers pass over each other's rows (``SKIP LOCKED``) and serialises with advisory locks.
SQLite holds one instance per file and ``BEGIN IMMEDIATE`` already serialises every
writer (service/db/engine.py), so there the same calls change nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def is_postgresql(bind) -> bool:
    """True when ``bind`` (an engine or connection) is PostgreSQL."""
    return bind.dialect.name == "postgresql"


def is_sqlite(bind) -> bool:
    """True when ``bind`` (an engine or connection) is SQLite."""
    return bind.dialect.name == "sqlite"


def sqlite_time(ts: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores for an aware time (UTC, naive, always with microseconds).

    For statements written as text on the hot path; see schema.UTCDateTime for the bound way.
    """
    return ts.astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def insert(bind, table):
    """An ``INSERT`` into ``table`` that knows ``ON CONFLICT`` (``on_conflict_do_nothing``/``_do_update``)."""
    name = bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database {name}")


def insert_new(bind, table, keys=None):
    """``INSERT … ON CONFLICT (keys) DO NOTHING``: rows whose key is taken are left as they are."""
    return insert(bind, table).on_conflict_do_nothing(index_elements=list(keys) if keys else None)


def locked(query, bind):
    """``query … FOR UPDATE`` on PostgreSQL: the rows it reads stay locked until commit."""
    return query.with_for_update() if is_postgresql(bind) else query


def claimable(query, bind):
    """``query … FOR UPDATE SKIP LOCKED`` on PostgreSQL: rows another instance is claiming are passed over.

    The caller orders and limits ``query`` (which rows go first is its decision, not the dialect's).
    """
    return query.with_for_update(skip_locked=True) if is_postgresql(bind) else query


def serialise(conn, name: str) -> None:
    """On PostgreSQL, wait for the transaction-scoped advisory lock ``name`` (released at commit)."""
    if is_postgresql(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
