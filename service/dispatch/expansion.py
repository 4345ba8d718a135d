"""Expansion: pending alert events and broadcasts become notifications in the outbox, one per subscriber.

``alerts.policy.decide`` says who is told what; the rows are written with ``insert_new`` so an
event expanded twice (two instances, a retry) creates nothing twice. Each pass looks first
with a read: on SQLite a write transaction queues for the lock behind the ingest's batches, and
the pump looks once a second and at every wake-up.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

import sqlalchemy as sa

from alerts import gsm7, messages, policy, priority
from alerts.levels import Level
from service import upstream
from service.alert_records import in_maintenance, insert_event
from service.audience import Audiences
from service.db import dialect, schema
from service.db.engine import reads_only
from service.station_rules import station_rules

log = logging.getLogger(__name__)

n = schema.notifications
ev = schema.alert_events
al = schema.alerts
st = schema.stations
bc = schema.broadcasts
ex = schema.exercises
PENDING_EVENTS = sa.select(ev.c.id).where(ev.c.dispatch == "pending").limit(1)
PENDING_BROADCASTS = sa.select(bc.c.id).where(bc.c.dispatch == "pending").limit(1)


def waiting(engine, query=None) -> bool:
    """True when an event (or, with ``query`` PENDING_BROADCASTS, a broadcast) waits; a read, not a write turn."""
    with reads_only(), engine.connect() as conn:
        if query is not None:
            return conn.execute(query).first() is not None
        return any(conn.execute(q).first() is not None for q in (PENDING_EVENTS, PENDING_BROADCASTS))


def _station(conn, station_id: str) -> dict:
    row = conn.execute(sa.select(st).where(st.c.id == station_id)).first()
    if row is None:
        return {"id": station_id, "name": station_id, "areas": []}
    return dict(row._mapping)




def expand_events(engine, templates, zone, now: datetime, *, limit: int = 20, staff_match_areas: bool = False,
                  validity_s: float = 3600, audiences: Audiences | None = None, then=None) -> int:
    """Turn pending alert events into notifications (one per subscriber), in one transaction; return how many.
    ``audiences``: the caller's index of who can be told, kept between calls (else one is read for this call);
    ``then(conn)`` runs in the same transaction after the events were expanded (the dispatcher claims there)."""
    created, audiences = 0, audiences or Audiences()
    if not waiting(engine, PENDING_EVENTS):
        return 0
    with engine.begin() as conn:
        query = dialect.claimable(
            sa.select(ev.c.id, ev.c.alert_id, ev.c.type, ev.c.level, ev.c.at, ev.c.reading)
            .where(ev.c.dispatch == "pending").order_by(ev.c.id).limit(limit), conn)
        events = conn.execute(query).fetchall()
        for event in events:
            created += _expand_event(conn, templates, zone, now, event, staff_match_areas, validity_s, audiences)
        if events:
            conn.execute(sa.update(ev).where(ev.c.id.in_([e.id for e in events])).values(dispatch="done"))
            if then is not None:
                then(conn)
    return created


def _expand_event(conn, templates, zone, now, event, staff_match_areas: bool, validity_s: float,
                  audiences: Audiences) -> int:
    """Create the notifications ``alerts.policy.decide`` asks for one event (none twice)."""
    alert_row = conn.execute(
        sa.select(al.c.id, al.c.station_id, al.c.kind, al.c.peak_level, al.c.exercise, al.c.ack_at, al.c.exercise_id,
                  ex.c.residents.label("drill_residents"))
        .outerjoin(ex, ex.c.id == al.c.exercise_id).where(al.c.id == event.alert_id)).first()
    if alert_row is None:
        return 0
    station_row = _station(conn, alert_row.station_id)
    alert, facts, station = _facts(alert_row, event, station_row)
    if alert_row.kind == upstream.KIND:  # what the station's own alerts say now (they may silence the wave)
        alert = dataclasses.replace(alert, **upstream.own_facts(conn, alert_row.station_id))
    if policy.heeds_maintenance(drill=alert_row.exercise_id is not None) and in_maintenance(conn, alert_row.station_id, now):
        station = dataclasses.replace(station, maintenance=True)
    rules = station_rules(station_row)
    notice = policy.decide(alert, facts, station, rules)
    if notice is None:
        return 0
    if notice.suppressed:  # what residents would have been told, on the record (spec section 10)
        record = {"event_id": event.id, "type": event.type, "notification": notice.kind}
        insert_event(conn, alert_row.id, "suppressed", event.level, now, now, record, "none")
    audience = audiences.audience(conn, station_row.get("areas") or [], residents=notice.residents,
                                  staff=notice.staff, staff_match_areas=staff_match_areas)
    if not audience:
        return 0
    bodies: dict[str, str] = {}
    rows = []
    until = policy.valid_until(notice.kind, now, validity_s)
    for person in audience:
        language = person.language if person.language in templates.languages() else messages.DEFAULT_LANGUAGE
        if language not in bodies:
            bodies[language] = _render(templates, language, notice, alert, facts, station, rules, zone, event.id)
        rows.append({
            "event_id": event.id, "alert_id": alert_row.id, "subscriber_id": person.id, "phone": person.phone,
            "language": language, "kind": notice.kind, "body": bodies[language], "status": "pending",
            "priority": notice.priority, "attempts": 0, "created_at": now, "updated_at": now, "valid_until": until,
        })
    return len(conn.execute(dialect.insert_new(conn, n).returning(n.c.id), rows).all())


def _facts(alert_row, event, station_row: dict):
    """The policy's facts of one stored alert, event and station."""
    alert = policy.AlertFacts(kind=alert_row.kind, peak=Level.parse(alert_row.peak_level),
                              exercise=bool(alert_row.exercise), drill_residents=bool(alert_row.drill_residents),
                              acknowledged=alert_row.ack_at is not None)
    facts = policy.EventFacts(type=event.type, level=event.level, at=event.at, reading=event.reading)
    return alert, facts, policy.StationFacts(station_row)


def _render(templates, language, notice, alert, facts, station, rules, zone, event_id) -> str:
    try:
        return policy.notice_text(templates, language, notice, alert, facts, station, rules, zone)
    except policy.RENDER_ERRORS:
        log.exception("cannot render %s for event %s; sending a plain text", notice.template, event_id)
        return policy.fallback_text(alert, facts, station)


def broadcast_body(templates, language: str, message: str) -> str:
    """An operator's message wrapped with the sender name (unless it already starts with it), GSM-7."""
    text = " ".join(gsm7.sanitise(message).split())
    if text.upper().startswith("BPBD LUTIM"):
        return text
    return messages.render(templates, "broadcast.wrapper", language, {"message": text})


def expand_broadcasts(engine, templates, now: datetime, *, limit: int = 5, audiences: Audiences | None = None) -> int:
    """Turn pending broadcasts into notifications, in one transaction; return how many."""
    created, audiences = 0, audiences or Audiences()
    if not waiting(engine, PENDING_BROADCASTS):
        return 0
    with engine.begin() as conn:
        query = dialect.claimable(sa.select(bc).where(bc.c.dispatch == "pending").order_by(bc.c.id).limit(limit), conn)
        pending = conn.execute(query).fetchall()
        for broadcast in pending:
            roles = broadcast.roles or ["resident", "staff"]
            areas = broadcast.areas or None
            audience = audiences.audience(conn, areas, residents="resident" in roles, staff="staff" in roles,
                                          staff_match_areas=True)
            bodies: dict[str, str] = {}
            rows = []
            for person in audience:
                language = person.language if person.language in templates.languages() else messages.DEFAULT_LANGUAGE
                if language not in bodies:
                    bodies[language] = broadcast_body(templates, language, broadcast.body)
                rows.append({
                    "broadcast_id": broadcast.id, "subscriber_id": person.id, "phone": person.phone,
                    "language": language, "kind": "broadcast", "body": bodies[language], "status": "pending",
                    "priority": priority.priority("broadcast"), "attempts": 0, "created_at": now, "updated_at": now,
                })
            if rows:
                created += len(conn.execute(dialect.insert_new(conn, n).returning(n.c.id), rows).all())
        if pending:
            conn.execute(sa.update(bc).where(bc.c.id.in_([b.id for b in pending])).values(dispatch="done"))
    return created


