"""Data quality before judgment in the database (spec section 17): the readings' marks and the silence check.

The decisions are the engine's (``alerts/quality.py``, ``alerts/engine/``); this stores what
it made of each water level (``readings.quality``, counted in ``/metrics``), keeps when a held
doubtful sample is due (``station_state.quality_due_at``); ``service.alerting.judge_overdue``,
one of the scheduled rule jobs, judges a held sample whose station stayed silent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.engine import DEFAULT_EXPECTED_INTERVAL_S, Judgement
from alerts.times import rfc3339
from service.db.schema import readings

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
