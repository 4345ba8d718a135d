"""A flood in progress over the seeded Luwu Timur stations, written straight into the tables.

Night rain over the Pongkeru and Malili catchments: Pongkeru at AWAS, Malili at SIAGA, Laoli
at WASPADA (already acknowledged), two rain gauges warning, Angkona silent for three hours.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa

from service.db import schema

STEP = timedelta(minutes=10)

# station id -> (level, final water level m, rise starts hours ago, base level m)
WATER = {
    "PKR-LASKAP": ("awas", 3.18, 7, 0.9),
    "MLL-MALILI": ("siaga", 3.34, 6, 1.3),
    "LAO-HARAPAN": ("waspada", 1.31, 4, 0.6),
    "KLN-MANGKUTANA": ("normal", 1.42, 0, 1.40),
    "KLN-KALAENA": ("normal", 1.85, 0, 1.80),
    "KLN-WOTU": ("normal", 2.10, 2, 1.90),
    "AGK-ANGKONA": ("normal", 1.12, 0, 1.10),  # silent since 3 h ago (offline)
    "LRN-PARUMPANAI": ("normal", 0.95, 0, 0.95),
}
# station id -> (level, mm per 10 minutes during the storm, storm hours)
RAIN = {
    "ARR-PONGKERU": ("siaga", 3.6, 6),
    "ARR-MALILI": ("waspada", 2.1, 5),
    "ARR-MANGKUTANA": ("normal", 0.2, 2),
    "ARR-SOROWAKO": ("normal", 0.0, 0),
}
OFFLINE = {"AGK-ANGKONA": timedelta(hours=3)}


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _water_curve(final: float, rise_h: float, base: float, ago: timedelta) -> float:
    """A smooth rise from ``base`` to ``final`` over the last ``rise_h`` hours, with a little ripple."""
    hours_ago = ago.total_seconds() / 3600
    ripple = 0.015 * math.sin(hours_ago * 3.1)
    if rise_h <= 0 or hours_ago >= rise_h:
        return round(base + ripple, 3)
    progress = 1 - hours_ago / rise_h
    return round(base + (final - base) * (progress ** 1.6), 3)


def seed_flood(engine, now: datetime) -> dict:
    """Write readings, station states, alerts, events, subscribers and SMS; return the alert ids by station."""
    now = now.replace(second=0, microsecond=0)
    steps = int(timedelta(hours=26) / STEP)
    readings, states = [], []
    for station_id, (level, final, rise_h, base) in WATER.items():
        silent = OFFLINE.get(station_id, timedelta(0))
        last = None
        for i in range(steps, -1, -1):
            ago = i * STEP
            if ago < silent:
                continue
            ts = now - ago
            value = final if ago == silent else _water_curve(final, rise_h, base, ago)
            readings.append({"station_id": station_id, "metric": "water_level", "ts": ts, "value": value,
                             "received_at": ts})
            last = (ts, value)
        states.append({"station_id": station_id, "level": level, "online": not silent, "last_seen": last[0],
                       "latest": {"water_level": {"value": last[1], "ts": _iso(last[0])},
                                  "battery": {"value": 12.6 if not silent else 11.2, "ts": _iso(last[0])}},
                       "updated_at": now})
    for station_id, (level, mm, storm_h) in RAIN.items():
        last_ts = None
        for i in range(steps, -1, -1):
            ago = i * STEP
            ts = now - ago
            hours_ago = ago.total_seconds() / 3600
            value = round(mm * (1.0 + 0.4 * math.sin(i)), 1) if hours_ago < storm_h else 0.0
            readings.append({"station_id": station_id, "metric": "rainfall", "ts": ts, "value": max(value, 0.0),
                             "received_at": ts})
            last_ts = ts
        states.append({"station_id": station_id, "level": level, "online": True, "last_seen": last_ts,
                       "latest": {"rainfall": {"value": mm, "ts": _iso(last_ts)},
                                  "battery": {"value": 12.9, "ts": _iso(last_ts)}},
                       "updated_at": now})

    with engine.begin() as conn:
        conn.execute(sa.insert(schema.readings), readings)
        conn.execute(sa.insert(schema.station_state), states)
        ids = {}
        ids["PKR-LASKAP"] = _alert(conn, "PKR-LASKAP", "water_level", now,
                                   [("raised", "waspada", 5.0, 1.82), ("escalated", "siaga", 3.0, 2.41),
                                    ("escalated", "awas", 1.2, 3.01)])
        ids["MLL-MALILI"] = _alert(conn, "MLL-MALILI", "water_level", now,
                                   [("raised", "waspada", 3.5, 2.51), ("escalated", "siaga", 0.8, 3.21)])
        ids["LAO-HARAPAN"] = _alert(conn, "LAO-HARAPAN", "water_level", now, [("raised", "waspada", 1.5, 1.21)],
                                    ack=("Piket malam BPBD", 1.0, "Tim TRC menuju Harapan"))
        ids["ARR-PONGKERU"] = _alert(conn, "ARR-PONGKERU", "rainfall", now,
                                     [("raised", "waspada", 4.0, 11.0), ("escalated", "siaga", 2.0, 21.5)])
        ids["ARR-MALILI"] = _alert(conn, "ARR-MALILI", "rainfall", now, [("raised", "waspada", 2.5, 10.4)])
        ids["AGK-ANGKONA"] = _alert(conn, "AGK-ANGKONA", "offline", now, [("raised", "waspada", 2.5, None)])
        _notifications(conn, now, ids)
    return ids


def _alert(conn, station_id, kind, now, events, ack=None) -> int:
    """One active alert with its events ``(type, level, hours ago, value)``."""
    opened = now - timedelta(hours=events[0][2])
    level = events[-1][1]
    peak = max((e[1] for e in events), key=["normal", "waspada", "siaga", "awas"].index)
    values = {"station_id": station_id, "kind": kind, "level": level, "peak_level": peak, "state": "active",
              "opened_at": opened}
    if ack:
        values.update(ack_by=ack[0], ack_at=now - timedelta(hours=ack[1]), ack_note=ack[2])
    alert_id = conn.execute(sa.insert(schema.alerts).values(**values)).inserted_primary_key[0]
    metric = {"water_level": "water_level", "rainfall": "rainfall"}.get(kind)
    for type_, lvl, hours_ago, value in events:
        at = now - timedelta(hours=hours_ago)
        reading = {"metric": metric, "value": value, "ts": _iso(at)} if metric else None
        conn.execute(sa.insert(schema.alert_events).values(alert_id=alert_id, type=type_, level=lvl, at=at,
                                                           recorded_at=at, reading=reading, dispatch="done"))
    return alert_id


def _notifications(conn, now, ids) -> None:
    """Residents of Malili and staff, and the SMS they were sent (with delivery states)."""
    subscribers = [{"phone": f"+6281200{n:05d}", "name": f"Warga {n}", "language": "id", "role": "resident",
                    "areas": [{"kecamatan": "Malili", "desa": None}], "created_at": now, "updated_at": now}
                   for n in range(60)]
    subscribers += [{"phone": f"+6281300{n:05d}", "name": f"Petugas {n}", "language": "id", "role": "staff",
                     "areas": [], "created_at": now, "updated_at": now} for n in range(4)]
    conn.execute(sa.insert(schema.subscribers), subscribers)
    sub_ids = [row.id for row in conn.execute(sa.select(schema.subscribers.c.id, schema.subscribers.c.role)
                                                .order_by(schema.subscribers.c.id))]
    rows = []
    # (alert station, how many residents, delivered, failed)
    for station_id, residents, delivered, failed in (("PKR-LASKAP", 60, 54, 2), ("MLL-MALILI", 42, 39, 1),
                                                      ("LAO-HARAPAN", 12, 12, 0), ("ARR-PONGKERU", 60, 51, 3),
                                                      ("ARR-MALILI", 30, 30, 0)):
        alert_id = ids[station_id]
        event_id, event_at = conn.execute(
            sa.select(schema.alert_events.c.id, schema.alert_events.c.at)
            .where(schema.alert_events.c.alert_id == alert_id)
            .order_by(schema.alert_events.c.id.desc()).limit(1)).one()
        targets = sub_ids[:residents] + sub_ids[60:]
        for index, sub_id in enumerate(targets):
            status = "delivered" if index < delivered or index >= residents else (
                "failed" if index < delivered + failed else "sent")
            # Handed to the provider 20 s after the reading, at the SMS rate of 10 per second.
            sent_at = event_at + timedelta(seconds=20 + index / 10)
            # At Laskap the internet link failed mid-flood: the last messages went out through the GSM modem.
            provider = "gammu" if station_id == "PKR-LASKAP" and index >= 40 else "twilio"
            rows.append({"event_id": event_id, "alert_id": alert_id, "subscriber_id": sub_id,
                         "phone": f"+62000000{index:04d}", "language": "id", "kind": "warning", "body": "-",
                         "status": status, "provider": provider, "created_at": now, "updated_at": now,
                         "sent_at": sent_at})
    conn.execute(sa.insert(schema.notifications), rows)


def open_new_alert(engine, now: datetime, station_id: str = "KLN-WOTU", level: str = "waspada") -> int:
    """A new alert appearing while the page is open (as the rules engine would write it)."""
    with engine.begin() as conn:
        conn.execute(sa.update(schema.station_state).where(schema.station_state.c.station_id == station_id)
                     .values(level=level, updated_at=now))
        return _alert(conn, station_id, "water_level", now, [("raised", level, 0.0, 2.81)])
