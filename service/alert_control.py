"""An operator's control of an alert's life (spec section 10): closing a stuck alert by hand.

``close`` ends an active alert with a ``closed`` event naming who and why; the notification
policy (``alerts.policy.decide``) sends the all-clear only when the operator asked for it, and
CAP ends the chain with a ``Cancel`` that does not say the danger is over. The station's rules
engine forgets the alert's kind, so the next reading is judged afresh: a river still high
raises a new alert. A water-level alert's ``upstream`` alerts downstream close the same way,
and its sirens switch off with it (they follow the open alerts).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import engine as rules_engine
from alerts import policy
from alerts.errors import AlreadyClosed
from alerts.levels import Level
from alerts.times import rfc3339
from service import station_states, upstream
from service.alert_views import get_alert
from service.alert_records import insert_event
from service.db import dialect
from service.db.schema import alerts, station_state, stations
from service.station_rules import station_rules


def close(conn: Connection, alert_id: int, by: str, reason: str, now: datetime, *, all_clear: bool = False) -> dict:
    """Close alert ``alert_id`` by hand; LookupError if there is none, AlreadyClosed if it is not active."""
    row = conn.execute(dialect.locked(sa.select(alerts).where(alerts.c.id == alert_id), conn)).first()
    if row is None:
        raise LookupError(f"no alert {alert_id}")
    if row.state != "active":
        raise AlreadyClosed(f"alert {alert_id} was closed at {rfc3339(row.closed_at)}")
    conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(
        state="closed", level=Level.NORMAL.label, closed_at=now))
    reading = {"all_clear": all_clear}
    dispatch = "pending" if _tells(conn, row, reading, now) else "none"
    insert_event(conn, alert_id, "closed", Level.NORMAL.label, now, now, reading, dispatch, by=by, note=reason)
    if row.exercise_id is None:  # a drill's readings have their own engine state, ended with the drill
        _forget(conn, row.station_id, row.kind)
        if row.kind == "water_level":  # the waves it sent downstream end the same way (spec section 11)
            upstream.source_closed(conn, row.station_id, alert_id, now, by=by, note=reason, all_clear=all_clear)
    return get_alert(conn, alert_id)


def _tells(conn: Connection, row, reading: dict, now: datetime) -> bool:
    """Whether the policy has a notice for the ``closed`` event (an all-clear, only when asked)."""
    station = conn.execute(sa.select(stations.c.id, stations.c.rules).where(stations.c.id == row.station_id)).first()
    rules = station_rules(dict(station._mapping) if station is not None else {"id": row.station_id})
    alert = policy.AlertFacts(kind=row.kind, peak=Level.parse(row.peak_level), exercise=bool(row.exercise))
    event = policy.EventFacts(type="closed", level=Level.NORMAL.label, at=now, reading=reading)
    return policy.decide(alert, event, policy.StationFacts({"id": row.station_id}), rules) is not None


def _forget(conn: Connection, station_id: str, kind: str) -> None:
    """The station's engine forgets ``kind``: its next sample opens a new episode if it is still high.

    Written as a whole state: the row's version moves, so the ingest instance holding the
    station re-reads it, judges from it and writes a checkpoint of it (``service.station_states``).
    """
    if kind not in rules_engine.ENGINE_KINDS:
        return  # offline and siren alerts are not the engine's
    query = dialect.locked(sa.select(station_state.c.engine, station_state.c.engine_delta, stations.c.rules)
                           .join(stations, stations.c.id == station_state.c.station_id)
                           .where(station_state.c.station_id == station_id), conn)
    row = conn.execute(query).first()
    if row is None or row.engine is None:
        return
    rules = station_rules({"id": station_id, "rules": row.rules})
    whole = station_states.whole_state(conn, station_id, rules, row.engine, row.engine_delta)
    conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(
        engine=rules_engine.forget(whole, kind)))
