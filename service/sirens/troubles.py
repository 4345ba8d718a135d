"""A siren in trouble (silent, or it answered ``error``): its station's staff-only ``siren`` alert opens and ends."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.levels import Level
from service.alert_records import notifies
from service.db.schema import alert_events, alerts, siren_state, stations
from service.station_rules import station_rules

log = logging.getLogger(__name__)

ALERT_KIND = "siren"


def _dispatch(conn: Connection, station_id: str, type_: str, level: Level, peak: Level, exercise: bool) -> str:
    """``pending`` when the notification policy tells someone of this event (staff: an operational kind)."""
    row = conn.execute(sa.select(stations.c.id, stations.c.rules).where(stations.c.id == station_id)).first()
    rules_ = station_rules({"id": station_id, "rules": row.rules if row is not None else None})
    return "pending" if notifies(ALERT_KIND, type_, level, peak, rules_, exercise=exercise) else "none"


def _open_siren_alert(conn: Connection, station_id: str):
    return conn.execute(sa.select(alerts).where(alerts.c.station_id == station_id, alerts.c.kind == ALERT_KIND,
                                                alerts.c.state == "active", alerts.c.exercise_id.is_(None))).first()


def raise_trouble(conn: Connection, siren_id: str, station_id: str, problem: str, now: datetime, *,
                  command_id: str | None, detail: str = "", exercise: bool = False) -> bool:
    """Mark the siren in trouble (``silent`` or ``error``) and open its station's ``siren`` alert; True if opened."""
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id)
                 .values(trouble=problem, updated_at=now))
    if _open_siren_alert(conn, station_id) is not None:
        return False
    alert_id = conn.execute(sa.insert(alerts).values(
        station_id=station_id, kind=ALERT_KIND, level=Level.WASPADA.label, peak_level=Level.WASPADA.label,
        state="active", opened_at=now, exercise=exercise, last_notified_at=now)).inserted_primary_key[0]
    reading = {"siren_id": siren_id, "problem": problem, "command_id": command_id, "detail": detail[:200]}
    dispatch = _dispatch(conn, station_id, "raised", Level.WASPADA, Level.WASPADA, exercise)
    conn.execute(sa.insert(alert_events).values(alert_id=alert_id, type="raised", level=Level.WASPADA.label, at=now,
                                                recorded_at=now, reading=reading, dispatch=dispatch))
    log.warning("siren %s at %s: %s (command %s) %s", siren_id, station_id,
                "does not answer" if problem == "silent" else "reports an error", command_id, detail)
    return True


def end_trouble(conn: Connection, siren_id: str, station_id: str, now: datetime, *, command_id: str) -> bool:
    """A good ack: the siren is fine; the station's ``siren`` alert ends when none of its sirens is in trouble."""
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id).values(trouble=None, updated_at=now))
    troubled = conn.execute(sa.select(sa.func.count()).select_from(siren_state).where(
        siren_state.c.station_id == station_id, siren_state.c.trouble.is_not(None))).scalar_one()
    current = _open_siren_alert(conn, station_id)
    if troubled or current is None:
        return False
    conn.execute(sa.update(alerts).where(alerts.c.id == current.id).values(
        state="closed", level=Level.NORMAL.label, closed_at=now, last_notified_at=now))
    dispatch = _dispatch(conn, station_id, "cleared", Level.NORMAL, Level.parse(current.peak_level),
                         bool(current.exercise))
    conn.execute(sa.insert(alert_events).values(
        alert_id=current.id, type="cleared", level=Level.NORMAL.label, at=now, recorded_at=now,
        reading={"siren_id": siren_id, "command_id": command_id}, dispatch=dispatch))
    log.info("siren %s at %s answers again; its siren alert %s ended", siren_id, station_id, current.id)
    return True
