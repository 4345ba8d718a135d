"""Maintenance windows (spec section 10): a station taken out of service for calibration or repair.

During a window the station's readings are stored, shown and judged as always, but nothing of
it reaches residents: the notification policy (``alerts.policy.decide``, told by
``StationFacts.maintenance``) turns each message to them into an event ``suppressed``; staff
still get SIAGA and AWAS warnings, marked as under maintenance, and no offline alert is raised.
When a window ends, ``announce_ended`` tells residents of each alert of the station still
active at or above ``notify_from``, at its current level (event ``announced``), and staff of a
supply still low (the battery alert the window held back).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts import policy
from alerts.errors import AlreadyEnded, FieldError
from alerts.levels import Level
from alerts.model import PUBLIC_ALERT_KINDS
from alerts.rules import Rules
from alerts.times import rfc3339
from service import alert_records
from service.station_rules import station_rules
from service.db.engine import reads_only
from service.db.schema import alert_events as ev, alerts, maintenance_windows as mw, station_state, stations

MAX_WINDOW = timedelta(days=7)


def active(conn: Connection, station_id: str, at: datetime):
    """The station's window in force at ``at``, or None."""
    return conn.execute(sa.select(mw).where(mw.c.station_id == station_id, mw.c.starts_at <= at, mw.c.ends_at > at)
                        .order_by(mw.c.ends_at.desc()).limit(1)).first()


def create(conn: Connection, station_id: str, starts_at: datetime, ends_at: datetime, reason: str, by: str,
           now: datetime) -> dict:
    """Open a window (at most 7 days; FieldError naming the field otherwise); return it."""
    if conn.execute(sa.select(stations.c.id).where(stations.c.id == station_id)).first() is None:
        raise FieldError("station_id", f"there is no station {station_id!r}")
    if ends_at <= starts_at:
        raise FieldError("until", "must be later than from")
    if ends_at - starts_at > MAX_WINDOW:
        raise FieldError("until", "a window lasts at most 7 days")
    if ends_at <= now:
        raise FieldError("until", "is in the past")
    window_id = conn.execute(sa.insert(mw).values(
        station_id=station_id, starts_at=starts_at, ends_at=ends_at, reason=reason, created_by=by, created_at=now,
    )).inserted_primary_key[0]
    return get(conn, window_id, now)


def end(conn: Connection, window_id: int, by: str, now: datetime) -> dict:
    """End a window now (LookupError if there is none, AlreadyEnded if it has); the end is announced by the job."""
    row = conn.execute(sa.select(mw).where(mw.c.id == window_id)).first()
    if row is None:
        raise LookupError(f"no maintenance window {window_id}")
    if row.ends_at <= now:
        raise AlreadyEnded(f"maintenance window {window_id} ended at {rfc3339(row.ends_at)}")
    conn.execute(sa.update(mw).where(mw.c.id == window_id).values(ends_at=max(now, row.starts_at), ended_by=by))
    return get(conn, window_id, now)


def get(conn: Connection, window_id: int, now: datetime) -> dict:
    """One window as the API shows it; LookupError if there is none."""
    row = conn.execute(sa.select(mw).where(mw.c.id == window_id)).first()
    if row is None:
        raise LookupError(f"no maintenance window {window_id}")
    return to_dict(row, now)


def to_dict(row, now: datetime) -> dict:
    """``{id, station_id, from, until, reason, by, created_at, ended_by, state}``."""
    return {"id": row.id, "station_id": row.station_id, "from": rfc3339(row.starts_at), "until": rfc3339(row.ends_at),
            "reason": row.reason, "by": row.created_by, "created_at": rfc3339(row.created_at),
            "ended_by": row.ended_by, "state": "active" if row.ends_at > now else "ended"}


def listing(conn: Connection, state: str | None, now: datetime) -> list[dict]:
    """Windows, newest first; ``state`` ``active`` (in force or to come) or ``ended``."""
    query = sa.select(mw).order_by(mw.c.starts_at.desc(), mw.c.id.desc())
    if state == "active":
        query = query.where(mw.c.ends_at > now)
    elif state == "ended":
        query = query.where(mw.c.ends_at <= now)
    return [to_dict(row, now) for row in conn.execute(query)]


def in_force(conn: Connection, station_ids: list[str], now: datetime) -> dict[str, dict]:
    """``{station_id: {until, reason}}`` of the windows in force now, for a page of stations."""
    if not station_ids:
        return {}
    rows = conn.execute(sa.select(mw).where(mw.c.station_id.in_(station_ids), mw.c.starts_at <= now,
                                            mw.c.ends_at > now).order_by(mw.c.ends_at))
    return {row.station_id: {"until": rfc3339(row.ends_at), "reason": row.reason} for row in rows}


def stations_in_maintenance(conn: Connection, now: datetime) -> set[str]:
    """The stations in a window now (their sirens are not switched automatically, spec section 12)."""
    return {row.station_id for row in conn.execute(sa.select(mw.c.station_id).where(mw.c.starts_at <= now,
                                                                                    mw.c.ends_at > now))}


def status_of(conn: Connection, station_id: str, now: datetime) -> dict | None:
    """``{until, reason}`` of the window in force, for a station's ``status``; None outside one."""
    row = active(conn, station_id, now)
    return None if row is None else {"until": rfc3339(row.ends_at), "reason": row.reason}


def announce_ended(engine: Engine, now: datetime) -> int:
    """Announce every window that has ended and is not announced yet (the rule jobs run it); return how many alerts."""
    with reads_only(), engine.connect() as conn:
        due = conn.execute(sa.select(mw.c.id).where(mw.c.ends_at <= now, mw.c.announced_at.is_(None))
                           .order_by(mw.c.id)).scalars().all()
    announced = 0
    for window_id in due:
        with engine.begin() as conn:
            announced += announce_ended_now(conn, window_id, now)
    return announced


def announce_ended_now(conn: Connection, window_id: int, now: datetime) -> int:
    """If window ``window_id`` has ended and nobody announced it: tell residents of its station's alerts still at or above notify_from."""
    won = conn.execute(sa.update(mw).where(mw.c.id == window_id, mw.c.ends_at <= now, mw.c.announced_at.is_(None))
                       .values(announced_at=now)).rowcount == 1
    if not won:
        return 0  # still running, or announced by another caller
    window = conn.execute(sa.select(mw.c.station_id, mw.c.starts_at).where(mw.c.id == window_id)).one()
    if alert_records.in_maintenance(conn, window.station_id, now):
        return 0  # the next window follows at once
    # A window chained to an earlier one (it began before that one ended) holds back since the first began.
    since = conn.execute(sa.select(sa.func.min(mw.c.starts_at)).where(
        mw.c.station_id == window.station_id, mw.c.starts_at <= window.starts_at,
        mw.c.ends_at >= window.starts_at)).scalar() or window.starts_at
    known = _rules_and_latest(conn, window.station_id)  # read once for the announcements and the battery
    announced = 0 if known is None else _announce(conn, window.station_id, *known, now)
    held_back = _held_back_all_clears(conn, window.station_id, since, now)
    battery = 0 if known is None else _held_back_battery(conn, window.station_id, *known, now)
    return announced + held_back + battery


def _rules_and_latest(conn: Connection, station_id: str) -> tuple[Rules, dict] | None:
    """The station's rules and newest stored values (metric -> {value, ts}); None for a station deleted since."""
    station = conn.execute(sa.select(stations.c.id, stations.c.rules).where(stations.c.id == station_id)).first()
    if station is None:
        return None
    state = conn.execute(sa.select(station_state.c.latest).where(station_state.c.station_id == station_id)).first()
    return station_rules(dict(station._mapping)), ((state.latest if state is not None else None) or {})


def _announce(conn: Connection, station_id: str, rules: Rules, latest: dict, now: datetime) -> int:
    """An ``announced`` event (dispatch pending) for each real public alert of the station at or above notify_from."""
    rows = conn.execute(sa.select(alerts).where(alerts.c.station_id == station_id, alerts.c.state == "active",
                                                alerts.c.kind.in_(PUBLIC_ALERT_KINDS), alerts.c.exercise_id.is_(None))).all()
    count = 0
    for row in rows:
        if not alert_records.notifies(row.kind, "announced", Level.parse(row.level), Level.parse(row.peak_level), rules):
            continue  # the policy's answer: below notify_from, nobody is told
        known = latest.get(row.kind)
        reading = None if known is None else {"metric": row.kind, "value": known["value"], "ts": known["ts"]}
        alert_records.insert_event(conn, row.id, "announced", row.level, now, now, reading, "pending")
        conn.execute(sa.update(alerts).where(alerts.c.id == row.id).values(last_notified_at=now))
        count += 1
    return count


def _held_back_all_clears(conn: Connection, station_id: str, since, now: datetime) -> int:
    """An ``announced`` all-clear (level normal, dispatch pending) of each real alert of the station that closed
    during the window with its all-clear suppressed: residents warned before it must not keep a warning nobody
    takes back. The outbox gives it only to those who got a warning of that alert (spec section 10); once."""
    rows = conn.execute(sa.select(ev.c.alert_id, ev.c.reading).join(alerts, alerts.c.id == ev.c.alert_id).where(
        alerts.c.station_id == station_id, alerts.c.state == "closed", alerts.c.exercise_id.is_(None),
        ev.c.type == "suppressed", ev.c.recorded_at >= since).order_by(ev.c.id)).all()
    held = {}
    for row in rows:
        if (row.reading or {}).get("notification") == "all_clear":
            held.setdefault(row.alert_id, (row.reading or {}).get("event_id"))
    count = 0
    for alert_id, source_id in held.items():
        if conn.execute(sa.select(ev.c.id).where(ev.c.alert_id == alert_id, ev.c.type == "announced",
                                                 ev.c.level == Level.NORMAL.label)).first():
            continue  # told already
        source = conn.execute(sa.select(ev.c.reading).where(ev.c.id == source_id)).first() if source_id else None
        reading = None if source is None else source.reading  # the reading that closed it, and its time
        alert_records.insert_event(conn, alert_id, "announced", Level.NORMAL.label, now, now, reading, "pending")
        count += 1
    return count


def _held_back_battery(conn: Connection, station_id: str, rules: Rules, latest: dict, now: datetime) -> int:
    """Open the battery alert the window held back (staff are told) if the station's supply is still low; 1 if opened."""
    newest = latest.get("battery")
    measured = None if newest is None else datetime.fromisoformat(newest["ts"])
    age_s = None if measured is None else (now - measured).total_seconds()
    if not policy.battery_owed(rules, newest, age_s) or alert_records.open_alert(conn, station_id, "battery", lock=True):
        return 0
    # The engine holds the station at this level and clears the alert when the supply recovers.
    alert_id = conn.execute(sa.insert(alerts).values(
        station_id=station_id, kind="battery", level=Level.WASPADA.label, peak_level=Level.WASPADA.label,
        state="active", opened_at=now, last_notified_at=now)).inserted_primary_key[0]
    reading = {"metric": "battery", "value": newest["value"], "ts": rfc3339(measured)}
    notified = alert_records.notifies("battery", "raised", Level.WASPADA, Level.WASPADA, rules)
    alert_records.insert_event(conn, alert_id, "raised", Level.WASPADA.label, now, now, reading,
                               "pending" if notified else "none")
    return 1
