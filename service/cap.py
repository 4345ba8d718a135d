"""Issuing CAP messages (spec sections 5 and 15): each public alert's chain, stored as issued.

``issue_due`` is the only writer of ``cap_messages``. The CAP job (``service/jobs.py``) runs
it right after ingest records events, at each chain's renewal time, and every few seconds as
a safety net (events written by another process); it issues what
``alerts.cap_chain.due_message`` says is due. A message is stored with its XML and served
unchanged ("never edit a published message"), so identifiers and references stay right when
a station is renamed or a setting changes later. Idempotent across instances: a chain
position (alert, number) is unique, so a second issuer's insert fails and changes nothing.

Who appears in the public feed is decided here, once: ``public_feed_filter``.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from alerts.cap import (
    DEFAULT_RADIUS_KM,
    CapAlert,
    CapEvent,
    CapProfile,
    CapStation,
    build_message,
    identifier_for,
    reference,
)
from alerts.cap_chain import CAP_EVENT_TYPES, Issued, due_message, next_renewal, renewal_time
from alerts.model import PUBLIC_ALERT_KINDS
from service.db import dialect
from service.db.engine import reads_only
from service.db.schema import alert_events, alerts, cap_messages, stations

log = logging.getLogger(__name__)

CANCEL_LISTED = timedelta(hours=24)  # a Cancel stays in the feed this long after it was sent
MAX_FEED_ENTRIES = 200


@dataclasses.dataclass(frozen=True)
class IssueResult:
    """What one pass issued, and when the next renewal is due (None: no active chain)."""

    issued: int
    next_at: datetime | None


def cap_profile(settings) -> CapProfile:
    """The issuer's profile from the settings (``EWS_CAP_*``, ``EWS_TIMEZONE``, ``EWS_PUBLIC_URL``)."""
    return CapProfile(sender=settings.cap_sender, timezone=settings.timezone, oid=settings.cap_oid,
                      expires_s=settings.cap_expires_s, web=f"{settings.public_url}/")


def public_feed_filter():
    """The one rule for what the public feed may list: public kinds, never an exercise (spec section 10)."""
    return sa.and_(alerts.c.kind.in_(PUBLIC_ALERT_KINDS), alerts.c.exercise.is_(False))


# --- issuing ------------------------------------------------------------------------


def issue_due(engine: Engine, profile: CapProfile, now: datetime) -> IssueResult:
    """Issue every message due at ``now``; return how many, and when the next renewal is due."""
    with reads_only(), engine.connect() as conn:  # SQLite: the look-up runs at every event, not behind the ingest
        candidates = _candidates(conn, profile, now)
    issued, next_at = 0, None
    for alert_id, state, last, newest_event in candidates:
        if _maybe_due(state, last, newest_event, now):
            try:
                with engine.begin() as conn:
                    new = _issue(conn, alert_id, profile, now)
            except IntegrityError:
                log.info("CAP: alert %s: another instance issued this message first", alert_id)
                continue
            if new is not None:
                issued += 1
                last, state = new, ("closed" if new.msg_type == "Cancel" else state)
        renew = next_renewal(state, [last] if last else [])
        if renew is not None and (next_at is None or renew < next_at):
            next_at = renew
    return IssueResult(issued=issued, next_at=next_at)


def _candidates(conn: Connection, profile: CapProfile, now: datetime) -> list[tuple]:
    """Public alerts whose chain may need a message: active ones, and those closed recently."""
    recent = now - max(CANCEL_LISTED, timedelta(seconds=profile.expires_s))
    rows = conn.execute(sa.select(alerts.c.id, alerts.c.state).where(
        alerts.c.kind.in_(PUBLIC_ALERT_KINDS), sa.or_(alerts.c.state == "active", alerts.c.closed_at >= recent))).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    newest = dict(conn.execute(
        sa.select(alert_events.c.alert_id, sa.func.max(alert_events.c.id))
        .where(alert_events.c.alert_id.in_(ids), alert_events.c.type.in_(CAP_EVENT_TYPES))
        .group_by(alert_events.c.alert_id)).all())
    lasts = {m.alert_id: _issued(m) for m in conn.execute(_latest_messages().where(cap_messages.c.alert_id.in_(ids)))}
    return [(r.id, r.state, lasts.get(r.id), newest.get(r.id)) for r in rows]


def _maybe_due(state: str, last: Issued | None, newest_event: int | None, now: datetime) -> bool:
    """A cheap pre-check on the summary row, so a quiet pass reads nothing more."""
    if newest_event is None or (last is not None and last.msg_type == "Cancel"):
        return False
    return last is None or newest_event > last.event_id or state != "active" or now >= renewal_time(last)


def _issue(conn: Connection, alert_id: int, profile: CapProfile, now: datetime) -> Issued | None:
    """Issue the alert's due message inside the caller's transaction; return it (None: nothing due)."""
    query = dialect.locked(sa.select(alerts).where(alerts.c.id == alert_id), conn)  # one issuer per chain at a time
    row = conn.execute(query).first()
    events = [CapEvent(id=e.id, type=e.type, level=e.level, at=e.at, recorded_at=e.recorded_at,
                       reading=e.reading if isinstance(e.reading, dict) else None)
              for e in conn.execute(sa.select(alert_events).where(
                  alert_events.c.alert_id == alert_id, alert_events.c.type.in_(CAP_EVENT_TYPES)))]
    issued = [_issued(m) for m in conn.execute(
        sa.select(*_META).where(cap_messages.c.alert_id == alert_id).order_by(cap_messages.c.number))]
    alert = _cap_alert(row)
    due = due_message(alert, events, issued, now, profile.expires_s)
    if due is None:
        return None
    seq = conn.execute(sa.insert(cap_messages).values(
        alert_id=alert_id, number=due.number, event_id=due.event.id, msg_type=due.msg_type, sent=due.sent,
        expires=due.expires, identifier=f"pending-{alert_id}-{due.number}", headline="", xml="",
    )).inserted_primary_key[0]
    identifier = identifier_for(profile, alert_id=alert_id, event_id=due.event.id, number=due.number, seq=seq,
                                sent=due.sent, first_for_event=due.first_for_event)
    message = build_message(alert, due.event, _cap_station(conn, row.station_id), profile, identifier=identifier,
                            msg_type=due.msg_type, sent=due.sent, expires=due.expires,
                            references=[reference(profile.sender, m.identifier, m.sent, profile.tz)
                                        for m in due.references])
    conn.execute(sa.update(cap_messages).where(cap_messages.c.id == seq).values(
        identifier=identifier, headline=message.headline, xml=message.xml))
    log.info("CAP: alert %s: %s %s%s", alert_id, due.msg_type, identifier, " (renewal)" if due.renewal else "")
    return Issued(number=due.number, event_id=due.event.id, msg_type=due.msg_type, identifier=identifier,
                  sent=due.sent, expires=due.expires)


_META = (cap_messages.c.alert_id, cap_messages.c.number, cap_messages.c.event_id, cap_messages.c.msg_type,
         cap_messages.c.identifier, cap_messages.c.sent, cap_messages.c.expires)


def _issued(row) -> Issued:
    return Issued(number=row.number, event_id=row.event_id, msg_type=row.msg_type, identifier=row.identifier,
                  sent=row.sent, expires=row.expires)


def _latest_messages(*columns):
    """The newest message of each alert (add a WHERE for the alerts wanted)."""
    newest = (sa.select(cap_messages.c.alert_id, sa.func.max(cap_messages.c.number).label("number"))
              .group_by(cap_messages.c.alert_id).subquery())
    return (sa.select(*(columns or _META))
            .join(newest, sa.and_(newest.c.alert_id == cap_messages.c.alert_id, newest.c.number == cap_messages.c.number)))


def _cap_alert(row) -> CapAlert:
    return CapAlert(id=row.id, station_id=row.station_id, kind=row.kind, level=row.level, state=row.state,
                    opened_at=row.opened_at, exercise=bool(row.exercise))


def _cap_station(conn: Connection, station_id: str) -> CapStation:
    row = conn.execute(sa.select(stations).where(stations.c.id == station_id)).first()
    if row is None:  # the station was removed; keep the warning readable
        return CapStation(id=station_id, name=station_id)
    return CapStation(id=row.id, name=row.name, river=row.river, lat=row.lat, lon=row.lon,
                      areas=tuple(row.areas or ()), cap_radius_km=row.cap_radius_km or DEFAULT_RADIUS_KM)


# --- serving ------------------------------------------------------------------------


def latest_xml(conn: Connection, alert_id: int) -> str | None:
    """The newest issued message of a public alert (exercises included: served at their URL), or None."""
    row = conn.execute(
        _latest_messages(cap_messages.c.xml)
        .join(alerts, alerts.c.id == cap_messages.c.alert_id)
        .where(cap_messages.c.alert_id == alert_id, alerts.c.kind.in_(PUBLIC_ALERT_KINDS))).first()
    return row.xml if row is not None else None


def feed_messages(conn: Connection, now: datetime) -> list:
    """The newest message of each alert the public feed lists: active ones, and Cancels of the last 24 h."""
    return conn.execute(
        _latest_messages(cap_messages.c.alert_id, cap_messages.c.identifier, cap_messages.c.msg_type,
                         cap_messages.c.sent, cap_messages.c.headline, alert_events.c.level)
        .join(alerts, alerts.c.id == cap_messages.c.alert_id)
        .join(alert_events, alert_events.c.id == cap_messages.c.event_id)
        .where(public_feed_filter(), sa.or_(
            sa.and_(alerts.c.state == "active", cap_messages.c.msg_type != "Cancel"),
            sa.and_(cap_messages.c.msg_type == "Cancel", cap_messages.c.sent > now - CANCEL_LISTED)))
        .order_by(cap_messages.c.sent.desc(), cap_messages.c.alert_id.desc())
        .limit(MAX_FEED_ENTRIES)).all()
