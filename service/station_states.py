"""The stations' rule states, held in memory by one ingest instance (spec section 16).

Judging a reading must not cost a read, decode and re-encode of its station's whole rules
state (up to six hours of samples). Each instance keeps the state of the stations it judges
in memory and writes, in the same transaction as the readings, only what changed:

* the samples themselves (the ``readings`` rows, written anyway),
* a small delta per batch (``station_state.engine_delta``: the base key, the rain sums for
  reminders) and the row's plain columns,
* now and then a checkpoint (``station_state.engine``: the base snapshot, at most
  ``CHECKPOINT_S`` of measurement time behind), from which ``alerts.engine.resume`` rebuilds
  the same state with the readings judged after it. A crash loses nothing; a restart
  resumes exactly.

``station_state.version`` is raised by every write of the row (its ``onupdate``). Each batch
locks its stations' rows in one query that reads only their versions; a station whose
version is not the one this instance wrote last (another instance judged it, the offline
check or a gateway's will changed it, or this instance never held it) is re-read, and only
that one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import engine as rules_engine
from alerts.rules import Rules
from service.db import dialect
from service.db.schema import readings, station_state, stations

CHECKPOINT_S = 3600  # measurement time between checkpoints: a reload replays at most horizon + this
_US = 1_000_000

# The row's plain columns an ingest batch rewrites (besides the engine's).
ROW_COLUMNS = ("level", "online", "last_seen", "latest", "rain_counter", "updated_at", "quality_due_at")


@dataclasses.dataclass
class Held:
    """One station's state as this instance last wrote (or read) it."""

    version: int
    row: dict  # ROW_COLUMNS
    engine: dict | None  # the whole engine state (alerts.engine), None before anything was judged
    delta: dict  # the engine_delta last written
    point_key: list | None = None  # base key of the stored checkpoint
    after_id: int | None = None  # the stored checkpoint's marker of where the station's readings begin
    needs_checkpoint: bool = True  # the stored engine column is no checkpoint of ``engine`` (yet)
    fresh: bool = False  # nothing was ever judged: the station's readings begin with its first batch


class StationStates:
    """The held states of one ingest instance; every method runs inside the caller's transaction."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}

    def forget(self, station_ids: Iterable[str] | None = None) -> None:
        """Drop held states (all of them by default): after a failed batch, or a re-created station."""
        if station_ids is None:
            self._held.clear()
            return
        for station_id in station_ids:
            self._held.pop(station_id, None)

    def lock(self, conn: Connection, station_ids: list[str], now: datetime,
             rules_of: Callable[[str], Rules]) -> dict[str, Held]:
        """Lock the rows of ``station_ids`` (sorted: one global order, no deadlock), creating missing ones.

        Returns each station's held state, re-read from the database only where its version moved.
        """
        versions = _lock_versions(conn, station_ids)
        missing = [station_id for station_id in station_ids if station_id not in versions]
        if missing:
            _create_rows(conn, missing, now)
            versions.update(_lock_versions(conn, missing))
        stale = [s for s in station_ids if s not in self._held or self._held[s].version != versions[s]]
        if stale:
            for row in conn.execute(_select_rows(), {"ids": stale}):
                self._held[row.station_id] = load(conn, row._mapping, rules_of(row.station_id))
        return {station_id: self._held[station_id] for station_id in station_ids}

    def write(self, conn: Connection, changes: list[dict]) -> None:
        """Write the batch's rows: on PostgreSQL one UPDATE of them all, on SQLite one executemany."""
        if not changes:
            return
        if dialect.is_postgresql(conn):
            conn.exec_driver_sql(_UPDATE_POSTGRESQL, _update_arrays(conn, changes))
        else:
            conn.exec_driver_sql(_UPDATE_SQLITE, _update_rows_sqlite(changes))


def changes(held: Held, station_id: str, values: Mapping, judgement=None, *, rain: bool = False,
            first_id: int | None = None) -> dict:
    """Apply one station's batch to ``held`` and return its row's parameters for ``StationStates.write``.

    ``values``: the plain columns (``service.samples.station_state_values``); ``judgement``: the
    engine's, if samples were judged (``rain``: rainfall among them); ``first_id``: the lowest
    readings id inserted for the station in this batch (where a new station's readings begin).
    """
    row = held.row
    row.update({k: v for k, v in values.items() if k in ROW_COLUMNS})
    params = {"b_station_id": station_id}
    if judgement is not None:
        state = judgement.state
        held.engine = state
        row["level"] = judgement.level.label
        delta = {"base_key": rules_engine.base_key(state)}
        kept = rules_engine.kept_of(state)
        if kept:
            delta["kept"] = kept  # resume decides these water levels as the replay that kept them did
        sums = rules_engine.current_rain_sums(state) if rain else held.delta.get("rain_sums")
        if sums is not None:
            delta["rain_sums"] = sums
        held.delta = delta
        if _checkpoint_due(held, judgement.ignored):
            if held.fresh and first_id is not None:
                held.after_id = first_id - 1  # a new station: its readings begin with this batch
            params["b_engine"] = rules_engine.checkpoint(state, held.after_id)
            held.point_key, held.needs_checkpoint, held.fresh = params["b_engine"]["base_key"], False, False
    for column in ROW_COLUMNS:
        params[f"b_{column}"] = row.get(column)
    params["b_engine_delta"] = held.delta
    held.version += 1  # the UPDATE raises it by one; the row is ours until commit
    return params


def _checkpoint_due(held: Held, ignored: int) -> bool:
    """A checkpoint is written when the stored one cannot rebuild the state, or has fallen behind."""
    if held.needs_checkpoint or ignored:
        # Samples older than the horizon were stored but not judged: a replay must not judge them,
        # so the checkpoint moves past them.
        return True
    point = rules_engine.point_key(held.engine)  # the base key of the checkpoint it would write
    if point is None or point == held.point_key:
        return False  # the stored checkpoint still holds an empty base, or this very base
    if held.point_key is None:
        return True
    return rules_engine.base_key(held.engine)[0] - held.point_key[0] >= CHECKPOINT_S * _US


def load(conn: Connection, row: Mapping, rules: Rules) -> Held:
    """A station's held state from its row (and, for a checkpoint, the readings judged after it)."""
    doc, delta = row["engine"], row.get("engine_delta") or {}
    held = Held(version=row["version"], row={c: row[c] for c in ROW_COLUMNS}, engine=None, delta=dict(delta))
    if doc is None:
        held.fresh = True  # nothing judged yet: the first batch writes the first checkpoint
        return held
    if rules_engine.is_full_state(doc) or doc.get("v") == 1:
        # A whole state (the first release wrote one per batch; tools still may): judge from it, and
        # write a checkpoint of it with the next batch.
        held.engine = rules_engine.load_state(doc)
        held.needs_checkpoint = True
        return held
    held.engine = resume(conn, row["station_id"], rules, doc, delta)
    held.needs_checkpoint = False
    held.point_key = doc.get("base_key")
    held.after_id = doc.get("after_id")
    return held


def resume(conn: Connection, station_id: str, rules: Rules, doc: Mapping, delta: Mapping) -> dict:
    """Rebuild a station's whole engine state from its checkpoint and the readings judged after it."""
    key = doc.get("base_key")
    query = sa.select(readings.c.ts, readings.c.metric, readings.c.value).where(
        readings.c.station_id == station_id, readings.c.metric.in_(rules_engine.JUDGED_METRICS))
    if key is not None:
        query = query.where(readings.c.ts >= rules_engine.from_micros(key[0]))
    if doc.get("after_id") is not None:
        query = query.where(readings.c.id > doc["after_id"])
    entries = [(rules_engine.micros(r.ts), r.metric, r.value) for r in conn.execute(query)]
    # The station's own interval: when a held doubtful sample is overdue decides whether the next one
    # refutes it (a spike) or it was judged as it is; the default one rebuilt another state.
    interval = conn.execute(_interval_statement(), {"id": station_id}).scalar()
    return rules_engine.resume(rules, doc, delta.get("base_key"), entries, expected_interval_s=interval,
                               kept=delta.get("kept"))


def whole_state(conn: Connection, station_id: str, rules: Rules, doc: Mapping | None, delta: Mapping | None) -> dict | None:
    """The whole engine state of a stored ``engine`` column, whatever its form (for tools and tests)."""
    if doc is None or rules_engine.is_full_state(doc) or doc.get("v") == 1:
        return doc
    return resume(conn, station_id, rules, doc, delta or {})


# -- statements (built once per process, never per row) ------------------------------------------


def _lock_versions(conn: Connection, station_ids: list[str]) -> dict[str, int]:
    if dialect.is_postgresql(conn):
        result = conn.exec_driver_sql(_LOCK_POSTGRESQL, (list(station_ids),))
    else:
        result = conn.exec_driver_sql(_lock_sqlite(len(station_ids)), tuple(station_ids))
    return dict(result.all())


# The versions of a batch's stations, as text: the compiled statement's expanding IN was rendered and
# bound again for every batch. PostgreSQL takes the row locks in the sorted order (no deadlock);
# SQLite serialises every writer anyway (BEGIN IMMEDIATE).
_LOCK_POSTGRESQL = ("SELECT station_id, version FROM station_state WHERE station_id = ANY(%b::varchar[]) "
                    "ORDER BY station_id FOR UPDATE")


@functools.lru_cache(maxsize=64)
def _lock_sqlite(count: int) -> str:
    marks = ", ".join(["?"] * count)
    return f"SELECT station_id, version FROM station_state WHERE station_id IN ({marks}) ORDER BY station_id"


@functools.cache
def _interval_statement():
    return sa.select(stations.c.expected_interval_s).where(stations.c.id == sa.bindparam("id"))


@functools.cache
def _select_rows():
    return sa.select(station_state).where(station_state.c.station_id.in_(sa.bindparam("ids", expanding=True)))


def _create_rows(conn: Connection, station_ids: list[str], now: datetime) -> None:
    conn.execute(dialect.insert_new(conn, station_state, ["station_id"]),
                 [{"station_id": s, "level": "normal", "online": True, "latest": {}, "updated_at": now}
                  for s in station_ids])


# PostgreSQL: the rows of a batch in one statement, their values as arrays in psycopg's binary format
# (an executemany sent, bound and executed one UPDATE per station). JSON columns travel as the text
# SQLAlchemy's JSON type writes (json.dumps; None is JSON null), a checkpoint only where one is due.
_UPDATE_POSTGRESQL = (
    "UPDATE station_state AS s SET level = v.level, online = v.online, last_seen = v.last_seen, "
    "latest = v.latest::json, rain_counter = v.rain_counter::json, updated_at = v.updated_at, "
    "quality_due_at = v.quality_due_at, engine_delta = v.engine_delta::json, "
    "engine = CASE WHEN v.checkpoint THEN v.engine::json ELSE s.engine END, version = s.version + 1 "
    "FROM unnest(%b::varchar[], %b::varchar[], %b::bool[], %b::timestamptz[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::timestamptz[], %b::text[], %b::bool[], %b::text[]) "
    "AS v(station_id, level, online, last_seen, latest, rain_counter, updated_at, quality_due_at, engine_delta, "
    "checkpoint, engine) WHERE s.station_id = v.station_id")


def _update_arrays(conn: Connection, changes: list[dict]) -> tuple[list, ...]:
    """The columns of ``_UPDATE_POSTGRESQL`` from ``StationStates.write``'s parameters."""
    def when(column: str, value):
        return station_state.c[column].type.process_bind_param(value, conn.dialect)  # aware, UTC

    return (
        [c["b_station_id"] for c in changes], [c["b_level"] for c in changes], [c["b_online"] for c in changes],
        [when("last_seen", c["b_last_seen"]) for c in changes], [json.dumps(c["b_latest"]) for c in changes],
        [json.dumps(c["b_rain_counter"]) for c in changes], [when("updated_at", c["b_updated_at"]) for c in changes],
        [when("quality_due_at", c["b_quality_due_at"]) for c in changes],
        [json.dumps(c["b_engine_delta"]) for c in changes], ["b_engine" in c for c in changes],
        [json.dumps(c["b_engine"]) if "b_engine" in c else None for c in changes],
    )


# SQLite: the rows of a batch in one executemany of a text UPDATE, bound as SQLAlchemy binds them (the
# compiled statement ran every JSON and time bind processor per row through its own machinery):
# JSON as json.dumps text (None is JSON null), times as schema.UTCDateTime's text, a checkpoint
# only where one is due. tests/integration/test_station_state_write.py holds both to the same text.
_UPDATE_SQLITE = (
    "UPDATE station_state SET level = ?, online = ?, last_seen = ?, latest = ?, rain_counter = ?, updated_at = ?, "
    "quality_due_at = ?, engine_delta = ?, engine = CASE WHEN ? THEN ? ELSE engine END, version = version + 1 "
    "WHERE station_id = ?")


def _update_rows_sqlite(changes: list[dict]) -> list[tuple]:
    """The parameters of ``_UPDATE_SQLITE``, one tuple per station, from ``StationStates.write``'s."""
    def when(value: datetime | None) -> str | None:
        return None if value is None else dialect.sqlite_time(value)

    return [
        (c["b_level"], None if c["b_online"] is None else int(c["b_online"]), when(c["b_last_seen"]),
         json.dumps(c["b_latest"]), json.dumps(c["b_rain_counter"]), when(c["b_updated_at"]),
         when(c["b_quality_due_at"]), json.dumps(c["b_engine_delta"]), int("b_engine" in c),
         json.dumps(c["b_engine"]) if "b_engine" in c else None, c["b_station_id"])
        for c in changes
    ]
