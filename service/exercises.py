"""Exercises (drills, spec section 10): started by staff through the API, for some stations, time-boxed.

While an exercise runs, readings on ``{prefix}/exercise/stations/{id}/readings`` of its
stations are stored in ``exercise_readings``, judged from ``exercise_state`` and raise alerts
of the exercise's own ``AlertScope`` (``exercise: true``, ``exercise_id``) - see
``service/exercise_ingest.py``. Real readings of the same stations are judged as always. An
exercise ends by ``DELETE /exercises/{id}`` or when ``until`` comes (the scheduler's
``end_due``); its open alerts then close with their all-clear. Its readings and state stay,
with it, for the after-action review (docs/exercises.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts.errors import AlreadyEnded, ExerciseError, StationBusy
from alerts.times import rfc3339
from service import alerting
from service.alert_records import AlertScope
from service.db import dialect
from service.db.engine import reads_only
from service.db.schema import exercise_state, exercises, stations

log = logging.getLogger(__name__)

MAX_DURATION = timedelta(hours=24)
ENDED_BY_UNTIL = "until"  # ``ended_by`` of an exercise that ran out
END_NOTE = "latihan selesai / exercise ended"


def scope(exercise_id: int) -> AlertScope:
    """The alert scope of one exercise."""
    return AlertScope(exercise=True, exercise_id=exercise_id)


def to_dict(row) -> dict:
    """An exercise as the API shows it: ``{id, stations, residents, note, started_at, until, ended_at, by}``."""
    return {"id": row.id, "stations": list(row.stations), "residents": bool(row.residents), "note": row.note,
            "started_at": row.started_at, "until": row.until, "ended_at": row.ended_at, "by": row.created_by,
            "ended_by": row.ended_by}


def _running(now: datetime):
    return sa.and_(exercises.c.ended_at.is_(None), exercises.c.started_at <= now, exercises.c.until > now)


def start(conn: Connection, *, station_ids: list[str], until: datetime, residents: bool, note: str, by: str,
          now: datetime) -> dict:
    """Start an exercise now for ``station_ids`` until ``until``; ExerciseError or StationBusy when it cannot."""
    if until <= now:
        raise ExerciseError("until", "must be in the future")
    if until > now + MAX_DURATION:
        raise ExerciseError("until", f"must be at most {MAX_DURATION.total_seconds() / 3600:g} h ahead")
    wanted = list(dict.fromkeys(station_ids))
    known = set(conn.execute(sa.select(stations.c.id).where(stations.c.id.in_(wanted))).scalars())
    for i, station_id in enumerate(wanted):
        if station_id not in known:
            raise ExerciseError(f"stations.{i}", f"no station {station_id!r}")
    # Serialise starts on PostgreSQL so two staff cannot put one station in two drills at once.
    dialect.serialise(conn, "ews-exercises")
    for row in conn.execute(sa.select(exercises).where(_running(now))):
        busy = sorted(set(row.stations) & set(wanted))
        if busy:
            raise StationBusy(f"station {busy[0]} is already in exercise #{row.id} until "
                              f"{rfc3339(row.until)}; end it first")
    exercise_id = conn.execute(sa.insert(exercises).values(
        stations=wanted, residents=residents, note=note, started_at=now, until=until, created_by=by,
    )).inserted_primary_key[0]
    return get(conn, exercise_id)


def get(conn: Connection, exercise_id: int) -> dict:
    """One exercise; LookupError if there is none."""
    row = conn.execute(sa.select(exercises).where(exercises.c.id == exercise_id)).first()
    if row is None:
        raise LookupError(f"no exercise {exercise_id}")
    return to_dict(row)


def station_status(conn: Connection, exercise_id: int) -> dict[str, dict]:
    """Per station of the exercise: its exercise level, when it last reported and its latest values."""
    rows = conn.execute(sa.select(exercise_state).where(exercise_state.c.exercise_id == exercise_id))
    return {row.station_id: {"level": row.level, "last_seen": row.last_seen, "latest": row.latest or {}}
            for row in rows}


def list_query(state: str | None):
    """The SELECT behind ``GET /exercises`` (``active``: not ended yet; ``ended``)."""
    query = sa.select(exercises)
    if state == "active":
        query = query.where(exercises.c.ended_at.is_(None))
    elif state == "ended":
        query = query.where(exercises.c.ended_at.is_not(None))
    return query


def open_by_station(conn: Connection) -> dict[str, Mapping]:
    """Station id -> the not-yet-ended exercise that covers it (at most one: ``start`` makes sure)."""
    covered: dict[str, Mapping] = {}
    for row in conn.execute(sa.select(exercises).where(exercises.c.ended_at.is_(None)).order_by(exercises.c.id)):
        for station_id in row.stations:
            covered[station_id] = row
    return covered


def end(conn: Connection, exercise_id: int, *, by: str, now: datetime) -> tuple[dict, list[dict]]:
    """End an exercise and close its open alerts (their all-clear goes as the rules say); (exercise, events)."""
    ended = conn.execute(sa.update(exercises).where(exercises.c.id == exercise_id, exercises.c.ended_at.is_(None))
                         .values(ended_at=now, ended_by=by)).rowcount
    if not ended:
        exercise = get(conn, exercise_id)  # LookupError when there is none
        raise AlreadyEnded(f"exercise {exercise_id} ended at {exercise['ended_at'].isoformat()}")
    events = alerting.clear_alerts(conn, scope(exercise_id), now, by=by, note=END_NOTE)
    return get(conn, exercise_id), events


def end_due(engine: Engine, now: datetime) -> int:
    """End every exercise whose ``until`` has come (scheduled); return how many."""
    with reads_only(), engine.connect() as conn:
        due = conn.execute(sa.select(exercises.c.id).where(exercises.c.ended_at.is_(None),
                                                           exercises.c.until <= now)).scalars().all()
    count = 0
    for exercise_id in due:
        try:
            with engine.begin() as conn:
                end(conn, exercise_id, by=ENDED_BY_UNTIL, now=now)
        except AlreadyEnded:
            continue  # ended by hand, or by another instance, meanwhile
        log.info("exercise %s ended: its time ran out", exercise_id)
        count += 1
    return count
