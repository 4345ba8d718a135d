"""The gateway's input format: ``key=value`` text lines and CSV rows, each one sample (see docs/field.md)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from alerts.errors import LineError
from alerts.times import rfc3339
from sensors import topics


def _number(raw: str) -> Any:
    """An int or float when ``raw`` is one; else the text itself (the service will say not_a_number)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def now_ts() -> str:
    """The board clock now, as RFC 3339 UTC ("Z")."""
    return rfc3339(datetime.now(timezone.utc), whole_seconds=True)


def sample_from_fields(fields: dict[str, str], default_station: str) -> tuple[str, dict[str, Any]]:
    """A ``(station_id, sample)`` from named text fields (a parsed line or CSV row)."""
    fields = {k.strip(): v.strip() for k, v in fields.items() if k and v is not None and v.strip() != ""}
    station = fields.pop("station", default_station)
    if not topics.is_station_id(station):
        raise LineError(f"bad station id {station!r}")
    ts_raw = fields.pop("ts", None)
    ts: Any = now_ts() if ts_raw is None else ts_raw
    if ts_raw is not None and not any(c in ts_raw for c in "-:T"):
        ts = _number(ts_raw)  # epoch seconds
    sample: dict[str, Any] = {"ts": ts}
    seq = fields.pop("seq", None)
    if seq is not None:
        sample["seq"] = _number(seq)
    if not fields:
        raise LineError("no values")
    sample["values"] = {name: _number(value) for name, value in fields.items()}
    return station, sample


def parse_line(line: str, default_station: str) -> tuple[str, dict[str, Any]] | None:
    """Parse one text line; None for blank and comment lines; LineError when it is not ``key=value`` pairs."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise LineError(f"expected key=value, got {token!r}")
        fields[key] = value
    return sample_from_fields(fields, default_station)
