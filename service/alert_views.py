"""Alerts and their events as the API, the dashboard and the reports show them (spec section 2)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.times import rfc3339
from service.db.schema import alert_events, alerts


def alert_to_dict(row, events: list | None = None) -> dict:
    """An alert as the API shows it (spec section 2)."""
    doc = {
        "id": row.id,
        "station_id": row.station_id,
        "kind": row.kind,
        "level": row.level,
        "peak_level": row.peak_level,
        "state": row.state,
        "opened_at": rfc3339(row.opened_at),
        "closed_at": rfc3339(row.closed_at),
        "acknowledged": None if row.ack_at is None else {"by": row.ack_by, "at": rfc3339(row.ack_at), "note": row.ack_note},
        "exercise": bool(row.exercise),
        "exercise_id": row.exercise_id,
        # An upstream alert (spec section 11): the source it stands on and when that wave arrives here.
        "source_station_id": row.source_station_id,
        "eta": rfc3339(row.eta),
    }
    if events is not None:
        doc["events"] = [event_to_dict(e) for e in events]
    return doc


def event_to_dict(row) -> dict:
    """One alert event: ``{type, level, at, reading}`` (plus who and why for an acknowledgement or a close by hand)."""
    doc = {"id": row.id, "type": row.type, "level": row.level, "at": rfc3339(row.at), "reading": row.reading}
    if row.type in ("acknowledged", "closed"):
        doc["by"], doc["note"] = row.by, row.note
    return doc


def get_alert(conn: Connection, alert_id: int) -> dict:
    """One alert with its events in the order they were recorded; LookupError if there is none."""
    row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise LookupError(f"no alert {alert_id}")
    events = conn.execute(
        sa.select(alert_events).where(alert_events.c.alert_id == alert_id).order_by(alert_events.c.id)
    ).all()
    return alert_to_dict(row, events)


def alerts_query(state: str | None = None, station_id: str | None = None, exercise_id: int | None = None):
    """The SELECT behind ``GET /alerts`` (filter only; the caller orders and pages by (opened_at, id))."""
    query = sa.select(alerts)
    if state is not None:
        query = query.where(alerts.c.state == state)
    if station_id is not None:
        query = query.where(alerts.c.station_id == station_id)
    if exercise_id is not None:
        query = query.where(alerts.c.exercise_id == exercise_id)
    return query
