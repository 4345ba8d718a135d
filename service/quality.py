"""Data quality before judgment in the database (spec section 17): the readings' marks and the silence check.

The decisions are the engine's (``alerts/quality.py``, ``alerts/engine/``); this stores what
it made of each water level (``readings.quality``, counted in ``/metrics``), keeps when a held
doubtful sample is due (``station_state.quality_due_at``), and judges a held sample whose
station stayed silent (``judge_overdue``, one of the scheduled rule jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts.engine import DEFAULT_EXPECTED_INTERVAL_S, Judgement
from alerts.times import rfc3339
from service import station_states
from service.db import dialect
from service.db.schema import readings, station_state, stations
from service.station_rules import station_rules

log = logging.getLogger(__name__)


def quality_due_at(judgement: Judgement, received_at: datetime, expected_interval_s: float | None):
    """When the scheduled check judges the held doubtful sample: None when none is held, False for unchanged.

    Two intervals of measurement time after the held sample (spec section 17), and at least one
    interval after it arrived: a backlog flushed at once must not be judged by the clock before
    its next sample, which is right behind it.
    """
    if judgement.overdue_at is None:
        return None
    interval = timedelta(seconds=expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S)
    held_ts = judgement.overdue_at - 2 * interval
    if judgement.quality.get(held_ts) != "doubtful":
        return False  # held by an earlier batch: its due time stands
    return max(judgement.overdue_at, received_at + interval)


def mark_quality(conn: Connection, station_id: str, marks: Mapping[datetime, str], metrics=None) -> None:
    """Store what the quality check made of water levels (good, doubtful, spike) and count it."""
    for ts, mark in sorted(marks.items()):
        conn.execute(sa.update(readings).where(
            readings.c.station_id == station_id, readings.c.metric == "water_level", readings.c.ts == ts,
        ).values(quality=mark))
        if metrics is not None:
            metrics.readings_quality.labels(mark).inc()
        if mark == "spike":
            log.warning("station %s: water level at %s refuted by the next sample: a spike, not judged",
                        station_id, rfc3339(ts))


def judge_overdue(engine: Engine, now: datetime, metrics=None) -> int:
    """Judge each held doubtful water level whose station stayed silent 2 x ``expected_interval_s``; return how many.

    A late warning beats none (spec section 17). Idempotent: the row is locked and re-read, and
    a judged state holds nothing any more. The whole state is written back (the ingest instance
    that holds the station sees the row's version move and reads it again).
    """
    with engine.connect() as conn:
        due = conn.execute(sa.select(station_state.c.station_id).where(
            station_state.c.quality_due_at.is_not(None), station_state.c.quality_due_at <= now)).scalars().all()
    judged = 0
    for station_id in due:
        with engine.begin() as conn:
            # Locked: serialises with the ingest of this station.
            state = conn.execute(dialect.locked(sa.select(
                station_state.c.engine, station_state.c.engine_delta, station_state.c.quality_due_at)
                .where(station_state.c.station_id == station_id), conn)).first()
            station = conn.execute(sa.select(stations).where(stations.c.id == station_id)).first()
            if state is None or station is None or state.quality_due_at is None or state.quality_due_at > now:
                continue
            station = dict(station._mapping)
            rules = station_rules(station)
            whole = station_states.whole_state(conn, station_id, rules, state.engine, state.engine_delta)
            from service.alerting import REAL, judge_and_record  # the alert lifecycle builds on this module

            judgement, _ = judge_and_record(conn, station_id, rules, whole, [], now, REAL,
                                            expected_interval_s=station.get("expected_interval_s"), due_now=True)
            mark_quality(conn, station_id, judgement.quality, metrics)
            conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(
                engine=judgement.state, engine_delta=None, level=judgement.level.label, quality_due_at=None))
            judged += 1
            log.warning("station %s: doubtful water level not followed within 2 x %s s: judged as it is",
                        station_id, station.get("expected_interval_s"))
    return judged
