"""Upstream alerts in the database (spec section 11): a source's water-level alert warns the stations downstream.

``source_event`` runs in the transaction that records a water-level event: when the alert
entered or escalated to a level at or above its rules' ``upstream_from``, every station
downstream (``alerts.upstream.propagate``) gets its ``upstream`` alert opened or escalated.
``source_closed`` runs when that source alert closes (back to normal, or closed by an
operator) and closes the upstream alerts it caused, unless another source still holds them.
The decisions are pure (``alerts.upstream.follow``); this module only stores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from alerts import policy
from alerts.model import GAUGE_ALERT_KINDS
from alerts.levels import Level
from alerts.messages import upstream_place
from alerts.rules import Rules
from alerts.upstream import UpstreamChange, Wave, follow, network_from_stations, propagate
from service.alert_records import event_dict, insert_event, open_alert
from service.db.schema import alerts, stations
from service.station_rules import station_rules

KIND = "upstream"


def network(conn: Connection) -> dict[str, list[tuple[str, int]]]:
    """The river network of the registry (station -> [(downstream station, travel_s)])."""
    return network_from_stations(dict(r._mapping) for r in conn.execute(sa.select(stations.c.id, stations.c.downstream)))


def source_event(conn: Connection, station_id: str, rules: Rules, source_alert_id: int, type_: str, level: Level,
                 at: datetime, reading: Mapping | None, now: datetime, *, exercise: bool = False) -> list[dict]:
    """Open or escalate the upstream alerts downstream of ``station_id`` for one of its water-level events."""
    if type_ not in ("raised", "escalated") or level < rules.upstream_from:
        return []
    row = conn.execute(sa.select(stations).where(stations.c.id == station_id)).first()
    source = dict(row._mapping) if row is not None else {"id": station_id}
    # The source's words go with the wave, so each downstream text and CAP message names it as it was.
    reading = {**(reading or {}), "source_place": upstream_place(source), "source_name": source.get("name") or station_id}
    waves = propagate(network(conn), station_id, level, at, source_alert_id=source_alert_id, reading=reading)
    recorded = []
    for target in sorted(waves):
        recorded.extend(_follow(conn, target, station_id, waves[target], now, exercise=exercise))
    return recorded


def source_closed(conn: Connection, station_id: str, source_alert_id: int, now: datetime, *,
                  by: str | None = None, note: str | None = None, all_clear: bool = True) -> list[dict]:
    """The water-level alert ``source_alert_id`` of ``station_id`` closed: its upstream alerts lose that source.

    ``by`` and ``note`` name an operator who closed it by hand (events ``closed``); ``all_clear``
    False then tells nobody that it is safe.
    """
    query = sa.select(alerts.c.station_id, alerts.c.sources).where(
        alerts.c.kind == KIND, alerts.c.state == "active", alerts.c.exercise_id.is_(None))
    recorded = []
    for row in conn.execute(query.order_by(alerts.c.station_id)).all():
        held = (row.sources or {}).get(station_id)
        if held is not None and held.get("source_alert_id") in (None, source_alert_id):
            recorded.extend(_follow(conn, row.station_id, station_id, None, now, by=by, note=note,
                                    all_clear=all_clear))
    return recorded


def _follow(conn: Connection, target: str, source: str, wave: Wave | None, now: datetime, *, exercise: bool = False,
            by: str | None = None, note: str | None = None, all_clear: bool = True) -> list[dict]:
    """Apply one source's news to ``target``'s upstream alert; return the event recorded, if any."""
    current = open_alert(conn, target, KIND, lock=True)
    exercise = bool(current.exercise) if current is not None else exercise
    held = {} if current is None else {k: Wave.from_doc(v) for k, v in (current.sources or {}).items()}
    change = follow(held, source, wave)
    if not change.changed or (current is None and change.type != "raised"):
        return []
    try:
        with conn.begin_nested():
            alert_id, peak = _store(conn, current, target, change, now, exercise)
    except IntegrityError:
        if current is not None:
            raise
        # Another instance opened this station's upstream alert meanwhile (uq_alerts_one_open): follow that one.
        return _follow(conn, target, source, wave, now, exercise=exercise, by=by, note=note, all_clear=all_clear)
    if change.type is None:
        return []  # the same level: a nearer source or a new ETA is shown, not announced again
    type_ = change.type
    if type_ == "cleared" and by is not None:
        type_ = "closed"
    level = change.wave.level if change.wave is not None else Level.NORMAL
    shown = change.wave or Wave.from_doc(current.sources[source])  # closed: the wave that was expected
    at = change.wave.at if change.wave is not None else now
    reading = event_reading(shown)
    if type_ == "closed":
        reading["all_clear"] = all_clear  # as the operator asked when closing the source (spec section 10)
    dispatch = "pending" if notifies(conn, target, type_, level, peak, reading, exercise=exercise) else "none"
    event_id = insert_event(conn, alert_id, type_, level.label, at, now, reading, dispatch, by=by, note=note)
    if dispatch == "pending":
        conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(last_notified_at=now))
    return [event_dict(event_id, alert_id, target, KIND, type_, level.label, at, dispatch)]


def _store(conn: Connection, current, target: str, change: UpstreamChange, now: datetime,
           exercise: bool) -> tuple[int, Level]:
    """Write the upstream alert's new level, source, ETA and waves; return its id and peak."""
    sources = {k: w.to_doc() for k, w in change.waves.items()}
    wave = change.wave
    if current is None:
        values = dict(station_id=target, kind=KIND, level=wave.level.label, peak_level=wave.level.label,
                      state="active", opened_at=wave.at, exercise=exercise,
                      source_station_id=wave.source_station_id, eta=wave.eta, sources=sources)
        return conn.execute(sa.insert(alerts).values(**values)).inserted_primary_key[0], wave.level
    if wave is None:
        conn.execute(sa.update(alerts).where(alerts.c.id == current.id).values(
            state="closed", level=Level.NORMAL.label, closed_at=max(now, current.opened_at), sources={}))
        return current.id, Level.parse(current.peak_level)
    peak = max(Level.parse(current.peak_level), wave.level)
    conn.execute(sa.update(alerts).where(alerts.c.id == current.id).values(
        level=wave.level.label, peak_level=peak.label, source_station_id=wave.source_station_id, eta=wave.eta,
        sources=sources))
    return current.id, peak


def event_reading(wave: Wave) -> dict:
    """An upstream event's reading: the source reading with where it came from and when it arrives here."""
    reading = dict(wave.reading or {})
    reading.update(source_station_id=wave.source_station_id, source_alert_id=wave.source_alert_id,
                   source_level=wave.level.label, eta=wave.to_doc()["eta"])
    return reading


def own_alerts(conn: Connection, station_id: str) -> dict[str, Level]:
    """The station's own open public alerts (real ones), kind -> level."""
    rows = conn.execute(sa.select(alerts.c.kind, alerts.c.level).where(
        alerts.c.station_id == station_id, alerts.c.state == "active", alerts.c.exercise_id.is_(None),
        alerts.c.kind.in_(GAUGE_ALERT_KINDS))).all()
    return {r.kind: Level.parse(r.level) for r in rows}


def own_facts(conn: Connection, station_id: str) -> dict:
    """The policy's facts of a station's own alerts, for its upstream alert (``alerts.policy.AlertFacts``)."""
    own = own_alerts(conn, station_id)
    return {"own_level": own.get("water_level", Level.NORMAL), "own_active": bool(own)}


def notifies(conn: Connection, station_id: str, type_: str, level: Level, peak: Level, reading: Mapping | None, *,
             exercise: bool) -> bool:
    """Whether an upstream event of ``station_id`` reaches people: ``alerts.policy.decide`` has a notice for it."""
    row = conn.execute(sa.select(stations).where(stations.c.id == station_id)).first()
    station = dict(row._mapping) if row is not None else {"id": station_id}
    alert = policy.AlertFacts(kind=KIND, peak=peak, exercise=exercise, **own_facts(conn, station_id))
    event = policy.EventFacts(type=type_, level=level.label, at=datetime.min, reading=reading)
    return policy.decide(alert, event, policy.StationFacts(station), station_rules(station)) is not None
