"""The ingest's insert of a whole batch's readings: every station's samples in one statement per 1,000 rows.

Samples already stored are skipped (``ON CONFLICT DO NOTHING`` on (station, metric, ts)); the
caller learns which samples went in now, and, for the stations it names, the lowest readings id
inserted (where a new station's readings begin, service/station_states.py).

Almost every batch stores every sample it offers. That case is known from the statement's own row
count, without a returned row per sample: on SQLite the returned rows were fetched one at a time
through SQLAlchemy and turned into per-station sets, about half of the insert's time in the worker
(docs/performance.md, the profiles of 2026-12-02).
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime

from sqlalchemy.engine import Connection

from alerts.model import Sample
from service.db import dialect

ReadingRow = tuple  # (station_id, metric, ts, value, received_at): one readings row of a batch
ROWS_PER_STATEMENT = 1000  # 5 parameters each: far under SQLite's 32,766 and PostgreSQL's 65,535


@dataclasses.dataclass
class StoredBatch:
    """What a batch's insert stored: everything, or per station the (metric, ts) inserted now."""

    all_new: bool
    keys: dict[str, set] = dataclasses.field(default_factory=dict)  # only when not ``all_new``
    first_ids: dict[str, int] = dataclasses.field(default_factory=dict)  # of the stations asked for

    def inserted(self, station_id: str, offered: list[Sample]) -> list[Sample]:
        """The samples of ``offered`` (one station's, unique) that were inserted now."""
        if self.all_new:
            return offered
        keys = self.keys.get(station_id, set())
        return [s for s in offered if (s.metric, s.ts) in keys]


def insert_batch(conn: Connection, rows: list[ReadingRow], first_ids_of: frozenset[str] = frozenset()) -> StoredBatch:
    """Insert the samples of every station of a batch (``rows`` unique), skipping stored ones.

    ``first_ids_of``: the stations whose lowest readings id inserted now the caller needs.
    """
    if not rows:
        return StoredBatch(all_new=True)
    if dialect.is_postgresql(conn):
        return _from_returned(_insert_postgresql(conn, rows), len(rows), first_ids_of)
    return _insert_sqlite(conn, rows, first_ids_of)  # the service runs on these two (service/db/engine.py)


def _from_returned(returned: list[tuple], offered: int, first_ids_of: frozenset[str]) -> StoredBatch:
    """The batch's outcome from its returned ``(id, station_id, metric, ts)`` rows."""
    stored = StoredBatch(all_new=len(returned) == offered)
    for row_id, station_id, metric, ts in returned:
        if not stored.all_new:
            stored.keys.setdefault(station_id, set()).add((metric, ts))
        if station_id in first_ids_of and row_id < stored.first_ids.get(station_id, row_id + 1):
            stored.first_ids[station_id] = row_id
    return stored


# -- SQLite ---------------------------------------------------------------------------------------


def _insert_sqlite(conn: Connection, rows: list[ReadingRow], first_ids_of: frozenset[str]) -> StoredBatch:
    """Multi-row ``INSERT … ON CONFLICT DO NOTHING`` texts, 1,000 rows each, and their row counts.

    ``BEGIN IMMEDIATE`` (service/db/engine.py) makes this transaction SQLite's only writer and a new
    row's id is one more than the largest id in the table (an ``INTEGER PRIMARY KEY``), so the rows
    inserted now are exactly those above the largest id before: read back only when needed (some
    rows were skipped, or a station's first id is asked for).
    """
    before = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM readings").scalar()
    as_time: dict[str, datetime] = {}
    count = 0
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start:start + ROWS_PER_STATEMENT]
        count += conn.exec_driver_sql(_sqlite_insert_text(len(chunk)), _sqlite_params(chunk, as_time)).rowcount
    if count == len(rows):
        stored = StoredBatch(all_new=True)
        if first_ids_of:
            stored.first_ids = _sqlite_first_ids(conn, before, first_ids_of)
        return stored
    returned = conn.exec_driver_sql("SELECT id, station_id, metric, ts FROM readings WHERE id > ?", (before,))
    # The returned times are the caller's own datetimes (each stored text came from one of them).
    return _from_returned([(i, s, m, as_time[ts]) for i, s, m, ts in returned.all()], len(rows), first_ids_of)


def _sqlite_params(chunk: list[ReadingRow], as_time: dict[str, datetime]) -> tuple:
    """The chunk's parameters; times as the text ``UTCDateTime`` stores, each distinct one converted once
    (a network's stations mostly report at the same minutes). ``as_time`` maps each text back."""
    as_text: dict[datetime, str] = {}
    params: list = []
    for station_id, metric, ts, value, received_at in chunk:
        text = as_text.get(ts)
        if text is None:
            text = as_text[ts] = dialect.sqlite_time(ts)
            as_time[text] = ts
        received = as_text.get(received_at)
        if received is None:  # a later row's ts may be this very time (its text then comes from here)
            received = as_text[received_at] = dialect.sqlite_time(received_at)
            as_time[received] = received_at
        params += (station_id, metric, text, float(value), received)
    return tuple(params)


@functools.lru_cache(maxsize=8)
def _sqlite_insert_text(count: int) -> str:
    """The statement for ``count`` rows (the compiled statement's per-row processing cost more than the insert)."""
    return ("INSERT INTO readings (station_id, metric, ts, value, received_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * count) + " ON CONFLICT (station_id, metric, ts) DO NOTHING")


def _sqlite_first_ids(conn: Connection, before: int, station_ids: frozenset[str]) -> dict[str, int]:
    marks = ", ".join(["?"] * len(station_ids))
    result = conn.exec_driver_sql(
        f"SELECT station_id, min(id) FROM readings WHERE id > ? AND station_id IN ({marks}) GROUP BY station_id",
        (before, *sorted(station_ids)))
    return dict(result.all())


# -- PostgreSQL -----------------------------------------------------------------------------------

# One statement whatever the batch's size: the rows travel as five arrays. (A multi-row VALUES
# text of 1,000 rows was parsed again by psycopg on every batch: too long for its query cache.)
_INSERT_POSTGRESQL = (
    "INSERT INTO readings (station_id, metric, ts, value, received_at) "
    "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::timestamptz[], %b::float8[], %b::timestamptz[]) "
    "ON CONFLICT (station_id, metric, ts) DO NOTHING RETURNING id, station_id, metric, ts")


def _insert_postgresql(conn: Connection, rows: list[ReadingRow]) -> list[tuple]:
    """The rows as arrays through ``unnest``, 1,000 at a time; the returned times are aware, as bound.

    Several instances may insert at once here, so the returned rows (all in one fetch: psycopg
    holds the whole result) say which are ours. The arrays go in psycopg's binary format (``%b``):
    as text, each element was quoted in Python, which cost more than the insert.
    """
    returned: list[tuple] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        columns = [list(column) for column in zip(*rows[start:start + ROWS_PER_STATEMENT])]
        columns[3] = [float(value) for value in columns[3]]
        result = conn.exec_driver_sql(_INSERT_POSTGRESQL, tuple(columns))
        try:
            returned += result.cursor.fetchall()
        finally:
            result.close()
    return returned
