"""What the dashboard shows, read straight from the tables (no dependency on the staff API routes).

Public data only unless a function says otherwise: stations, their levels and latest values,
thresholds, and alerts of the public kinds with SMS *counts* - never names or phone numbers.
"""

from __future__ import annotations

import copy
import functools
import json
from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa

from alerts.levels import Level
from alerts.model import GAUGE_ALERT_KINDS, PUBLIC_ALERT_KINDS
from alerts.rules import rules_to_doc
from alerts.times import rfc3339
from service import maintenance
from service.station_rules import station_rules
from service.db import schema
from service.web import trends

SERIES_HOURS = (6, 12, 24, 48, 72, 168)
DELIVERED = ("delivered",)
FAILED = ("failed", "undelivered")
NOT_SENT = ("superseded", "expired")
CARRIED = ("spooled", "sent", "delivered", "undelivered")  # the provider took it (Gammu: in the modem's queue)




def _level_rank(name: str | None) -> int:
    try:
        return int(Level.parse(name or "normal"))
    except ValueError:
        return 0


def primary_metric(metrics: list[str]) -> str | None:
    """The metric a station is watched by: water level for gauges, rainfall for rain gauges."""
    if "water_level" in metrics:
        return "water_level"
    if "rainfall" in metrics or "rain_tips" in metrics:
        return "rainfall"
    return None


def thresholds(rules: dict | str | None, metric: str | None) -> dict:
    """The warning thresholds of ``metric`` in the station's rules (levels not used are left out).

    ``rules``: the document, or its JSON text as stored (the public view reads it so: no decoding).
    """
    # Completing and parsing a rules document costs more than everything else the public view does
    # for a station, and the view is rebuilt every second: each distinct document is done once.
    key = rules if isinstance(rules, str) else json.dumps(rules, sort_keys=True)
    return copy.deepcopy(_thresholds(key, metric))


@functools.lru_cache(maxsize=1024)
def _thresholds(rules_json: str, metric: str | None) -> dict:
    doc = rules_to_doc(station_rules({"rules": json.loads(rules_json)}))
    levels = ("waspada", "siaga", "awas")
    if metric == "water_level":
        wl = doc.get("water_level") or {}
        return {"water_level": {name: wl[name] for name in levels if wl.get(name) is not None}}
    if metric == "rainfall":
        rain = doc.get("rainfall") or {}
        return {"rainfall": {window: {k: v for k, v in marks.items() if k in levels and v is not None}
                             for window, marks in rain.items() if isinstance(marks, dict)}}
    return {}


def _readings(conn, station_id: str, metric: str, since: datetime, until: datetime | None = None):
    r = schema.readings
    query = sa.select(r.c.ts, r.c.value, r.c.quality).where(
        r.c.station_id == station_id, r.c.metric == metric, r.c.ts >= since
    )
    if until is not None:
        query = query.where(r.c.ts <= until)
    return conn.execute(query.order_by(r.c.ts)).all()


def station_rows(conn, now: datetime) -> list[dict]:
    """Every station in the spec's shape (with ``status``), plus thresholds, trend and rain sums."""
    rows = conn.execute(_station_rows_query()).all()
    sirens = {r.siren_id: r for r in conn.execute(sa.select(schema.siren_state))}
    # A station under maintenance tells residents nothing: everyone sees until when (the reason is for staff).
    windows = maintenance.in_force(conn, [row.id for row in rows], now)
    metric_of = {row.id: primary_metric(list(row.metrics or [])) for row in rows}
    trend = trends.water_trends(conn, {row.id: (row.latest or {}).get("water_level")
                                       for row in rows if metric_of[row.id] == "water_level"})
    rain = trends.rain_sums(conn, [row.id for row in rows if metric_of[row.id] == "rainfall"], now)
    stations = []
    for row in rows:
        metric = metric_of[row.id]
        station = {
            "id": row.id, "name": row.name, "river": row.river, "kecamatan": row.kecamatan, "desa": row.desa,
            "lat": row.lat, "lon": row.lon, "metrics": list(row.metrics or []), "areas": row.areas or [],
            "mm_per_tip": row.mm_per_tip, "expected_interval_s": row.expected_interval_s,
            "status": {
                "level": row.level or "normal",
                # No state row yet: the station has never reported, so it is not known to be online.
                "online": bool(row.online) if row.level is not None else False,
                "last_seen": rfc3339(row.last_seen),
                "latest": row.latest or {},
            },
            "primary_metric": metric,
            "thresholds": thresholds(row.rules, metric),
        }
        if row.id in windows:
            station["status"]["maintenance"] = {"until": windows[row.id]["until"]}
        station["sirens"] = [siren_view(siren, sirens.get(siren["id"]), now) for siren in row.sirens or []]
        if metric == "water_level":
            station["trend"] = trend[row.id]
        elif metric == "rainfall":
            station["rain"] = rain[row.id]
        stations.append(station)
    return stations


@functools.lru_cache(maxsize=1)
def _station_rows_query():
    """The stations and their states, the columns the view shows; the rules as stored text (thresholds() is keyed by it)."""
    s, st = schema.stations, schema.station_state
    shown = [s.c[name] for name in ("id", "name", "river", "kecamatan", "desa", "lat", "lon", "metrics", "areas",
                                    "mm_per_tip", "expected_interval_s", "sirens")]
    return (sa.select(*shown, sa.type_coerce(s.c.rules, sa.Text).label("rules"), st.c.level, st.c.online,
                      st.c.last_seen, st.c.latest)
            .select_from(s.outerjoin(st, st.c.station_id == s.c.id))
            .order_by(s.c.id))


def siren_view(siren: dict, state, now: datetime) -> dict:
    """One siren as the map shows it: its last acknowledged state, whether it sounds now, its trouble."""
    commanded = (state.commanded if state is not None else None) or {}
    until = commanded.get("on_until") if commanded.get("action") == "on" else None
    acked = state.state if state is not None else "unknown"
    sounding = acked == "on" and until is not None and datetime.fromisoformat(until.replace("Z", "+00:00")) > now
    return {"id": siren["id"], "state": acked, "sounding": sounding,
            "trouble": state.trouble if state is not None else None}


def sms_counts(conn, alert_ids: list[int]) -> dict[int, dict]:
    """Per alert: residents and staff messaged, messages delivered, failed or pending, and by which provider."""
    counts: dict[int, dict] = {
        a: {"residents": 0, "residents_delivered": 0, "staff": 0, "messages": 0,
            "delivered": 0, "failed": 0, "pending": 0, "by_provider": {}}
        for a in alert_ids
    }
    if not alert_ids:
        return counts
    n, sub = schema.notifications, schema.subscribers
    rows = conn.execute(
        sa.select(n.c.alert_id, n.c.subscriber_id, sub.c.role, n.c.status, n.c.provider, sa.func.count().label("count"))
        .select_from(n.outerjoin(sub, sub.c.id == n.c.subscriber_id))
        .where(n.c.alert_id.in_(alert_ids))
        .group_by(n.c.alert_id, n.c.subscriber_id, sub.c.role, n.c.status, n.c.provider)
    ).all()
    people: dict[int, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        if row.status in NOT_SENT:
            continue  # superseded or expired: never a message to anyone
        c = counts[row.alert_id]
        c["messages"] += row.count
        bucket = "delivered" if row.status in DELIVERED else "failed" if row.status in FAILED else "pending"
        c[bucket] += row.count
        if row.provider and row.status in CARRIED:
            c["by_provider"][row.provider] = c["by_provider"].get(row.provider, 0) + row.count
        role = "staff" if row.role == "staff" else "resident"
        people[row.alert_id][role].add(row.subscriber_id)
        if role == "resident" and row.status in DELIVERED:
            people[row.alert_id]["resident_delivered"].add(row.subscriber_id)
    for alert_id, groups in people.items():
        counts[alert_id]["residents"] = len(groups["resident"])
        counts[alert_id]["residents_delivered"] = len(groups["resident_delivered"])
        counts[alert_id]["staff"] = len(groups["staff"])
    return counts


def active_alerts(conn, *, public: bool) -> list[dict]:
    """Active alerts, highest level first then oldest first; ``public`` keeps the public kinds and hides who acked."""
    a = schema.alerts
    query = sa.select(a).where(a.c.state == "active")
    if public:  # a drill's alerts are for staff: the public view shows only that a drill runs
        query = query.where(a.c.kind.in_(PUBLIC_ALERT_KINDS), a.c.exercise_id.is_(None))
    rows = conn.execute(query).all()
    counts = sms_counts(conn, [row.id for row in rows])
    items = []
    for row in rows:
        ack = None
        if row.ack_at is not None:
            ack = {"by": None if public else row.ack_by, "at": rfc3339(row.ack_at), "note": None if public else row.ack_note}
        items.append({
            "id": row.id, "station_id": row.station_id, "kind": row.kind, "level": row.level,
            "peak_level": row.peak_level, "state": row.state, "opened_at": rfc3339(row.opened_at),
            "closed_at": rfc3339(row.closed_at), "acknowledged": ack, "exercise": bool(row.exercise),
            "exercise_id": row.exercise_id, "sms": counts[row.id],
            # An incoming wave (upstream alert): where from and when it is expected here.
            "source_station_id": row.source_station_id, "eta": rfc3339(row.eta),
        })
    items.sort(key=lambda item: (-_level_rank(item["level"]), item["opened_at"] or ""))
    return items


def recently_closed(conn, now: datetime, days: int = 7, limit: int = 20) -> list[dict]:
    """Alerts of the public kinds closed in the last ``days`` (newest first): their reports are what BPBD files.

    Staff only: one closed by hand names who closed it and why (``closed_by``, ``reason``; null otherwise).
    """
    a = schema.alerts
    # A wave from upstream is reported with its source's episode, not as one of its own.
    rows = conn.execute(sa.select(a).where(a.c.state == "closed", a.c.kind.in_(GAUGE_ALERT_KINDS),
                                           a.c.closed_at >= now - timedelta(days=days))
                        .order_by(a.c.closed_at.desc(), a.c.id.desc()).limit(limit)).all()
    closed_by_hand = _closed_by_hand(conn, [row.id for row in rows])
    return [{"id": row.id, "station_id": row.station_id, "kind": row.kind, "peak_level": row.peak_level,
             "opened_at": rfc3339(row.opened_at), "closed_at": rfc3339(row.closed_at), "exercise": bool(row.exercise),
             "closed_by": closed_by_hand.get(row.id, (None, None))[0], "reason": closed_by_hand.get(row.id, (None, None))[1]}
            for row in rows]


def _closed_by_hand(conn, alert_ids: list[int]) -> dict[int, tuple[str, str]]:
    """``{alert id: (by, reason)}`` of the alerts an operator closed (event ``closed``, spec section 10)."""
    e = schema.alert_events
    if not alert_ids:
        return {}
    rows = conn.execute(sa.select(e.c.alert_id, e.c.by, e.c.note).where(e.c.alert_id.in_(alert_ids), e.c.type == "closed")
                        .order_by(e.c.id)).all()
    return {row.alert_id: (row.by, row.note) for row in rows}


def public_fingerprint(conn) -> tuple:
    """One cheap query that changes whenever the public view's data may have: states, alerts, exercises, registry,
    sirens, maintenance windows (one running out is caught by the snapshot's age)."""
    return tuple(conn.execute(_public_fingerprint_query()).one())


@functools.lru_cache(maxsize=1)
def _public_fingerprint_query():
    """The fingerprint's statement, built once: every public request runs it, and building it cost more than running it."""
    st, ev, ex, s = schema.station_state, schema.alert_events, schema.exercises, schema.stations
    mw = schema.maintenance_windows
    return sa.select(
        sa.select(sa.func.count()).select_from(st).scalar_subquery().label("states"),
        sa.select(sa.func.coalesce(sa.func.sum(st.c.version), 0)).scalar_subquery().label("versions"),
        sa.select(sa.func.max(ev.c.id)).scalar_subquery().label("events"),
        sa.select(sa.func.max(ex.c.id)).scalar_subquery().label("exercises"),
        sa.select(sa.func.count(ex.c.ended_at)).scalar_subquery().label("ended"),
        sa.select(sa.func.count()).select_from(s).scalar_subquery().label("stations"),
        sa.select(sa.func.max(s.c.updated_at)).scalar_subquery().label("registry"),
        sa.select(sa.func.max(schema.siren_state.c.updated_at)).scalar_subquery().label("sirens"),
        sa.select(sa.func.max(mw.c.id)).scalar_subquery().label("windows"),
        sa.select(sa.func.count(mw.c.ended_by)).scalar_subquery().label("windows_ended"),
    )


def public_view(engine, now: datetime, tz_name: str) -> dict:
    """The document behind ``GET /dashboard/public.json``."""
    with engine.connect() as conn:
        return {
            "generated_at": rfc3339(now),
            "timezone": tz_name,
            "stations": station_rows(conn, now),
            "alerts": active_alerts(conn, public=True),
            "exercises": running_exercises(conn, now),
        }


def running_exercises(conn, now: datetime) -> list[dict]:
    """The exercises running now: which stations, until when, whether residents get its messages."""
    e = schema.exercises
    rows = conn.execute(sa.select(e).where(e.c.ended_at.is_(None), e.c.until > now).order_by(e.c.id)).all()
    return [{"id": row.id, "stations": list(row.stations), "until": rfc3339(row.until), "residents": bool(row.residents)}
            for row in rows]


def _hourly_rain(rows, start: datetime, end: datetime) -> tuple[list[datetime], list[float]]:
    """Rain per clock hour (mm), labelled by the hour's end, from ``start`` to ``end``."""
    first = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    t = first
    while t < end:
        hours.append(t)
        t += timedelta(hours=1)
    totals = [0.0] * len(hours)
    for row in rows:
        index = int((row.ts - first).total_seconds() // 3600)
        # A sample exactly on the hour belongs to the hour that just ended.
        if row.ts == first + timedelta(hours=index) and index > 0:
            index -= 1
        if 0 <= index < len(hours):
            totals[index] += row.value
    return [h + timedelta(hours=1) for h in hours], totals


def station_series(engine, station_id: str, now: datetime, hours: int, *, public: bool = True) -> dict | None:
    """Chart data of one station for the last ``hours``: values, thresholds and alert events."""
    s = schema.stations
    start = now - timedelta(hours=hours)
    with engine.connect() as conn:
        station = conn.execute(sa.select(s).where(s.c.id == station_id)).first()
        if station is None:
            return None
        metric = primary_metric(list(station.metrics or []))
        doc = {"station_id": station_id, "metric": metric, "from": rfc3339(start), "to": rfc3339(now), "hours": hours,
               "thresholds": thresholds(station.rules, metric)}
        if metric == "water_level":
            rows = _readings(conn, station_id, "water_level", start, now)
            doc["unit"] = "m"
            doc["points"] = [[row.ts.timestamp(), row.value] for row in rows]
            # Spec 17: the chart marks doubtful and spike samples ([t, value, quality]); a spike is no part of the line.
            doc["quality"] = [[row.ts.timestamp(), row.value, row.quality] for row in rows if row.quality != "good"]
        elif metric == "rainfall":
            # 24 h more than shown, so the first rolling 24 h sum is complete.
            rows = _readings(conn, station_id, "rainfall", start - timedelta(hours=24), now)
            ends, totals = _hourly_rain(rows, start - timedelta(hours=24), now)
            shown = [i for i, end in enumerate(ends) if end > start]
            doc["unit"] = "mm"
            doc["hourly"] = [[ends[i].timestamp(), round(totals[i], 2)] for i in shown]
            doc["rolling"] = {
                window: [[ends[i].timestamp(), round(sum(totals[max(0, i - size + 1): i + 1]), 2)] for i in shown]
                for window, size in (("3h", 3), ("24h", 24))
            }
        a, e = schema.alerts, schema.alert_events
        query = (
            sa.select(e.c.type, e.c.level, e.c.at, a.c.kind, a.c.id.label("alert_id"))
            .select_from(e.join(a, a.c.id == e.c.alert_id))
            # The chart shows real readings: a drill's alert events are not drawn on it.
            .where(a.c.station_id == station_id, e.c.at >= start, a.c.exercise_id.is_(None))
            .order_by(e.c.at)
        )
        if public:
            query = query.where(a.c.kind.in_(GAUGE_ALERT_KINDS))  # the station's own readings' events
        doc["events"] = [
            {"at": rfc3339(row.at), "t": row.at.timestamp(), "type": row.type, "level": row.level,
             "kind": row.kind, "alert_id": row.alert_id}
            for row in conn.execute(query).all()
        ]
    return doc
