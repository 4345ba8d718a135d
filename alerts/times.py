"""The one way a time is written on the wire: RFC 3339 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(ts: datetime | None, *, whole_seconds: bool = False) -> str | None:
    """``2026-11-30T06:05:00Z`` (fractions kept when present, unless ``whole_seconds``); None stays None.

    A naive time is taken as UTC: every time inside the service is UTC.
    """
    if ts is None:
        return None
    ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
    if whole_seconds:
        ts = ts.replace(microsecond=0)
    return ts.isoformat().replace("+00:00", "Z")
