"""The public view's water trends and rain sums, for every station at once (one query each, not one or three per station).

The public document is rebuilt about once a second while anyone watches it; with a query per
station the rebuild took ~20 ms of the interpreter for 100 stations, during which every other
request waited its turns.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import sqlalchemy as sa

from service.db import schema

# A water level moving less than this in an hour is "steady" (gauges read to the centimetre).
STEADY_M_PER_H = 0.02
TREND_CHUNK = 100  # stations per trend statement (one SELECT each, joined by UNION ALL)
RAIN_WINDOWS = (("1h", 1), ("3h", 3), ("24h", 24))


def water_trends(conn, latest: dict[str, dict | None]) -> dict[str, dict | None]:
    """Each station's change of water level over the last hour before its latest reading (m per hour), or None.

    ``latest``: by station, its latest ``water_level`` sample (``{"ts": ..., "value": ...}``).
    """
    known = {sid: seen for sid, seen in ((sid, _latest_of(sample)) for sid, sample in latest.items()) if seen}
    earlier: dict[str, tuple[datetime, float]] = {}
    ids = list(known)
    for start in range(0, len(ids), TREND_CHUNK):
        chunk = ids[start:start + TREND_CHUNK]
        params = {}
        for i, station_id in enumerate(chunk):
            ts = known[station_id][0]
            params.update({f"s{i}": station_id, f"n{i}": ts - timedelta(minutes=30), f"o{i}": ts - timedelta(hours=2)})
        for row in conn.execute(_earlier_levels_query(len(chunk)), params):
            earlier[row.station_id] = (row.ts, row.value)
    return {sid: _trend(known[sid], earlier[sid]) if sid in known and sid in earlier else None for sid in latest}


def _latest_of(sample: dict | None) -> tuple[datetime, float] | None:
    if not sample or sample.get("value") is None or not sample.get("ts"):
        return None
    try:
        return datetime.fromisoformat(str(sample["ts"]).replace("Z", "+00:00")), float(sample["value"])
    except ValueError:
        return None


def _trend(latest: tuple[datetime, float], earlier: tuple[datetime, float]) -> dict:
    hours = (latest[0] - earlier[0]).total_seconds() / 3600
    per_hour = (latest[1] - earlier[1]) / hours
    direction = "steady" if abs(per_hour) < STEADY_M_PER_H else ("rising" if per_hour > 0 else "falling")
    return {"direction": direction, "per_hour": round(per_hour, 3)}


@functools.lru_cache(maxsize=8)
def _earlier_levels_query(count: int):
    """For ``count`` stations, each one's reading 30 minutes to 2 hours before its latest; built once per count.

    Written as text: the same statement built with SQLAlchemy's constructs costs more to look up in
    its statement cache, per execution, than the hundred queries it replaces.
    """
    r = schema.readings
    one = ("SELECT station_id, ts, value FROM (SELECT station_id, ts, value FROM readings WHERE station_id = :s{i} "
           "AND metric = 'water_level' AND ts <= :n{i} AND ts >= :o{i} ORDER BY ts DESC LIMIT 1) AS t{i}")
    binds = [sa.bindparam(f"{kind}{i}", type_=r.c.ts.type if kind != "s" else r.c.station_id.type)
             for i in range(count) for kind in "sno"]
    return (sa.text(" UNION ALL ".join(one.format(i=i) for i in range(count))).bindparams(*binds)
            .columns(r.c.station_id, r.c.ts, r.c.value))


def rain_sums(conn, station_ids: list[str], now: datetime) -> dict[str, dict]:
    """Rolling rainfall sums (mm) over the last 1 h, 3 h and 24 h of measurement time, by station."""
    if not station_ids:
        return {}
    params = {f"since_{window}": now - timedelta(hours=hours) for window, hours in RAIN_WINDOWS}
    totals = {row[0]: row[1:] for row in conn.execute(_rain_sums_query(), {"ids": station_ids, **params})}
    return {sid: {window: round(float(value or 0.0), 1) for (window, _), value in
                  zip(RAIN_WINDOWS, totals.get(sid, (0.0,) * len(RAIN_WINDOWS)))} for sid in station_ids}


@functools.lru_cache(maxsize=1)
def _rain_sums_query():
    """Every window's sum of every listed station in one pass over its last 24 hours."""
    r = schema.readings
    widest = RAIN_WINDOWS[-1][0]
    sums = [sa.func.coalesce(sa.func.sum(sa.case((r.c.ts > sa.bindparam(f"since_{window}"), r.c.value), else_=0.0)), 0.0)
            for window, _ in RAIN_WINDOWS]
    return (sa.select(r.c.station_id, *sums)
            .where(r.c.station_id.in_(sa.bindparam("ids", expanding=True)), r.c.metric == "rainfall",
                   r.c.ts > sa.bindparam(f"since_{widest}"))
            .group_by(r.c.station_id))
