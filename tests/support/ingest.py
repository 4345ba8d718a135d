"""Helpers for tests that feed the ingest path directly: a message, RFC 3339 times, what was stored."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from service.db.schema import readings
from service.ingest import Message


def iso(dt: datetime) -> str:
    """RFC 3339 UTC with ``Z``."""
    return dt.isoformat().replace("+00:00", "Z")


def message(station: str, body, received_at: datetime | None = None, prefix: str = "ews/v1") -> Message:
    """A readings message for ``station``; ``body`` is bytes or JSON-encoded."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(topic=f"{prefix}/stations/{station}/readings", payload=raw,
                   received_at=received_at or datetime.now(timezone.utc))


def send_at(services, station: str, ts: datetime, values: dict, received_after: timedelta) -> list[dict]:
    """One reading of ``station`` at ``ts`` through the real ingest path, received ``received_after`` later.

    Returns the alert events it caused; a rejected reading fails the test.
    """
    result = services.ingestor.ingest([message(station, {"ts": iso(ts), "values": values}, ts + received_after)])[0]
    assert not result.rejected, result.rejected
    return result.events


def stored(services, station: str, metric: str) -> list[tuple[datetime, float]]:
    """The stored (ts, value) of one station's metric, oldest first."""
    with services.engine.connect() as conn:
        rows = conn.execute(select(readings.c.ts, readings.c.value)
                            .where(readings.c.station_id == station, readings.c.metric == metric).order_by(readings.c.ts))
        return [(row.ts, row.value) for row in rows]
