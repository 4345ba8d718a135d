"""What only staff see on the dashboard, read from the tables: messages maintenance held back from residents."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from alerts.times import rfc3339
from service.db import schema

SUPPRESSED_HOURS = 24
SUPPRESSED_SHOWN = 20


def suppressed(conn, now: datetime, hours: int = SUPPRESSED_HOURS, limit: int = SUPPRESSED_SHOWN) -> dict:
    """``{count, by_station, items}``: the ``suppressed`` events of the last ``hours`` (spec section 10), newest first.

    Each item is one message residents did not get because the station was under maintenance:
    ``{id, alert_id, station_id, level, at, type, notification}`` (``type``: the event it would
    have announced; ``notification``: warning, reminder or all_clear).
    """
    a, e = schema.alerts, schema.alert_events
    where = (e.c.type == "suppressed", e.c.recorded_at >= now - timedelta(hours=hours))
    per_station = conn.execute(sa.select(a.c.station_id, sa.func.count().label("count"))
                               .select_from(e.join(a, a.c.id == e.c.alert_id)).where(*where)
                               .group_by(a.c.station_id)).all()
    rows = conn.execute(sa.select(e.c.id, e.c.alert_id, e.c.level, e.c.recorded_at, e.c.reading, a.c.station_id)
                        .select_from(e.join(a, a.c.id == e.c.alert_id)).where(*where)
                        .order_by(e.c.recorded_at.desc(), e.c.id.desc()).limit(limit)).all()
    items = [{"id": row.id, "alert_id": row.alert_id, "station_id": row.station_id, "level": row.level,
              "at": rfc3339(row.recorded_at), "type": (row.reading or {}).get("type"),
              "notification": (row.reading or {}).get("notification")} for row in rows]
    by_station = {row.station_id: row.count for row in per_station}
    return {"count": sum(by_station.values()), "by_station": by_station, "items": items}
