"""The audit trail: who changed what, with the before and after images (table audit_log)."""

from __future__ import annotations

import json
from datetime import datetime

import sqlalchemy as sa

from alerts.times import rfc3339

from service.db import schema


def _jsonable(value):
    """Make ``value`` storable in a JSON column (datetimes become RFC 3339 text)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_default))


def _default(value):
    if isinstance(value, datetime):
        return rfc3339(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def record(conn, actor: str, action: str, entity: str, entity_id, before, after, now: datetime) -> None:
    """Append one audit entry, inside the caller's transaction ``conn``."""
    conn.execute(
        sa.insert(schema.audit_log).values(
            at=now,
            actor=str(actor)[:120],
            action=str(action)[:32],
            entity=str(entity)[:32],
            entity_id=None if entity_id is None else str(entity_id)[:64],
            before=_jsonable(before),
            after=_jsonable(after),
        )
    )
