"""Alert rows and their events as every part that opens, changes or closes an alert writes them.

The ingest path (``service.alerting``), upstream waves (``service.upstream``), maintenance, sirens,
operators and the outbox all record alert events the same way: find the open alert of a station
and kind, insert an event (``dispatch='pending'`` when ``alerts.policy.decide`` has a notice for
it) and hand back the event as the ingest result shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import policy
from alerts.levels import Level
from alerts.rules import Rules
from alerts.times import rfc3339
from service.db import dialect
from service.db.schema import alert_events, alerts, maintenance_windows


@dataclasses.dataclass(frozen=True)
class AlertScope:
    """Whose alerts a judgement opens and continues: the real ones, or one drill's (each its own per (station, kind))."""

    exercise: bool = False  # marked as an exercise: EWS_EXERCISE, or a drill
    exercise_id: int | None = None  # the drill (POST /exercises); None for real alerts

    def owns(self):
        """The condition on ``alerts`` that selects this scope's alerts."""
        return alerts.c.exercise_id.is_(None) if self.exercise_id is None else alerts.c.exercise_id == self.exercise_id


REAL = AlertScope()


def open_alert(conn: Connection, station_id: str, kind: str, *, lock: bool = False, scope: AlertScope = REAL):
    """The station's open alert of ``kind`` in ``scope``, or None (``lock``: held until the transaction ends)."""
    query = sa.select(alerts).where(alerts.c.station_id == station_id, alerts.c.kind == kind,
                                    alerts.c.state == "active", scope.owns())
    if lock:
        query = dialect.locked(query, conn)
    return conn.execute(query).first()


def insert_event(conn: Connection, alert_id: int, type_: str, level: str, at: datetime, now: datetime,
                 reading: dict | None, dispatch: str, *, by: str | None = None, note: str | None = None) -> int:
    """Record one alert event (``dispatch='pending'`` when the policy has a notice for it); return its id."""
    result = conn.execute(sa.insert(alert_events).values(
        alert_id=alert_id, type=type_, level=level, at=at, recorded_at=now, reading=reading,
        by=by, note=note, dispatch=dispatch))
    return result.inserted_primary_key[0]


def event_dict(event_id: int, alert_id: int, station_id: str, kind: str, type_: str, level: str,
               at: datetime, dispatch: str) -> dict:
    """A recorded event as the ingest result (and the wake-ups after it) show it."""
    return {"id": event_id, "alert_id": alert_id, "station_id": station_id, "kind": kind, "type": type_,
            "level": level, "at": rfc3339(at), "dispatch": dispatch}


def notifies(kind: str, type_: str, level: Level, peak: Level, rules: Rules, *, exercise: bool = False,
             maintenance: bool = False, reading: Mapping | None = None) -> bool:
    """Whether an event must reach people (or be recorded as suppressed): ``alerts.policy.decide`` has a notice for it."""
    alert = policy.AlertFacts(kind=kind, peak=peak, exercise=exercise)
    event = policy.EventFacts(type=type_, level=level.label, at=datetime.min, reading=reading)
    return policy.decide(alert, event, policy.StationFacts({}, maintenance=maintenance), rules) is not None


def in_maintenance(conn: Connection, station_id: str, at: datetime) -> bool:
    """True while a maintenance window of the station is in force (spec section 10)."""
    return conn.execute(sa.select(maintenance_windows.c.id).where(
        maintenance_windows.c.station_id == station_id, maintenance_windows.c.starts_at <= at,
        maintenance_windows.c.ends_at > at).limit(1)).first() is not None
