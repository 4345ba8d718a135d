"""Public warnings (spec section 5): ``/cap/alerts/{id}.xml`` (CAP 1.2) and ``/cap/feed.atom``. No token."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app

from alerts.cap import (
    CAP_MEDIA_TYPE,
    PUBLIC_KINDS,
    CapAlert,
    CapEvent,
    CapStation,
    FeedEntry,
    atom_feed,
    cap_messages,
)
from service.db import schema
from service.http.errors import Problem

blp = Blueprint("cap", __name__)
MAX_FEED_ENTRIES = 200


def _cap_url(services, alert_id: int) -> str:
    return f"{services.settings.public_url}/cap/alerts/{alert_id}.xml"


def alert_messages(conn, services, alert_row):
    """The CAP messages of one alert row, oldest first."""
    e, s = schema.alert_events, schema.stations
    events = [
        CapEvent(id=r.id, type=r.type, level=r.level, at=r.at, recorded_at=r.recorded_at,
                 reading=r.reading if isinstance(r.reading, dict) else None)
        for r in conn.execute(sa.select(e).where(e.c.alert_id == alert_row.id).order_by(e.c.id))
    ]
    station_row = conn.execute(sa.select(s).where(s.c.id == alert_row.station_id)).first()
    if station_row is None:  # the station was removed; keep the warning readable
        station = CapStation(id=alert_row.station_id, name=alert_row.station_id)
    else:
        station = CapStation(id=station_row.id, name=station_row.name, river=station_row.river,
                             lat=station_row.lat, lon=station_row.lon, areas=tuple(station_row.areas or ()))
    alert = CapAlert(id=alert_row.id, station_id=alert_row.station_id, kind=alert_row.kind, level=alert_row.level,
                     state=alert_row.state, opened_at=alert_row.opened_at, exercise=bool(alert_row.exercise))
    return cap_messages(alert, events, station, tz=services.settings.timezone,
                        web=f"{services.settings.public_url}/")


@blp.get("/cap/alerts/<alert_ref>")
def cap_alert(alert_ref: str):
    """The latest CAP message of a public alert."""
    services = current_app.extensions["ews"]
    number = alert_ref.removesuffix(".xml")
    if not alert_ref.endswith(".xml") or not number.isascii() or not number.isdigit() or len(number) > 18:
        raise Problem(404, "Use /cap/alerts/{id}.xml with a numeric alert id.")
    a = schema.alerts
    with services.engine.connect() as conn:
        row = conn.execute(sa.select(a).where(a.c.id == int(number), a.c.kind.in_(PUBLIC_KINDS))).first()
        messages = alert_messages(conn, services, row) if row is not None else []
    if not messages:
        raise Problem(404, f"No public alert #{number}.")
    return Response(messages[-1].xml, mimetype=CAP_MEDIA_TYPE)


@blp.get("/cap/feed.atom")
def cap_feed():
    """Atom feed of the active public alerts, each linking to its latest CAP message."""
    services = current_app.extensions["ews"]
    a = schema.alerts
    entries = []
    with services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a).where(a.c.state == "active", a.c.kind.in_(PUBLIC_KINDS))
            .order_by(a.c.opened_at.desc(), a.c.id.desc()).limit(MAX_FEED_ENTRIES)
        ).fetchall()
        for row in rows:
            messages = alert_messages(conn, services, row)
            if messages:
                latest = messages[-1]
                entries.append(FeedEntry(message=latest, url=_cap_url(services, row.id),
                                         summary=f"{latest.msg_type}: {latest.level.upper()}"))
    feed_url = f"{services.settings.public_url}/cap/feed.atom"
    xml = atom_feed(entries, feed_url=feed_url, updated=_epoch_if_empty(entries, services))
    return Response(xml, mimetype="application/atom+xml")


def _epoch_if_empty(entries, services):
    # Deterministic: the newest message's time, or the clock when nothing is active.
    return max((e.message.sent for e in entries), default=None) or services.clock()
