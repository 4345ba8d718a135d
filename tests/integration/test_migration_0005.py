"""Upgrading to revision 0005 (exercises): existing alerts stay real, and the one-open-alert rule becomes
one per scope (real, or each exercise) on a database that already holds alerts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from service.db.migrate import upgrade
from service.db.schema import alerts, exercises

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


def alert(**values) -> dict:
    return {"station_id": "KLN-WOTU", "kind": "water_level", "level": "awas", "peak_level": "awas",
            "opened_at": NOW, **values}


def test_upgrade_keeps_alerts_real_and_gives_each_exercise_its_own_open_alert(engine):
    upgrade(engine, "0004")
    with engine.begin() as conn:
        # What a database at revision 0004 holds: closed episodes of a station and one open alert.
        conn.execute(sa.insert(alerts), [alert(state="closed", closed_at=NOW), alert(state="closed", closed_at=NOW),
                                         alert(state="active", closed_at=None)])
    upgrade(engine)
    with engine.begin() as conn:
        assert [r.exercise_id for r in conn.execute(sa.select(alerts))] == [None, None, None]
        exercise_id = conn.execute(sa.insert(exercises).values(
            stations=["KLN-WOTU"], started_at=NOW, until=NOW + timedelta(hours=1), created_by="test",
        )).inserted_primary_key[0]
        # A drill's alert beside the open real one: allowed.
        conn.execute(sa.insert(alerts).values(alert(state="active", exercise=True, exercise_id=exercise_id)))
    for extra in (alert(state="active"), alert(state="active", exercise=True, exercise_id=exercise_id)):
        with pytest.raises(IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.insert(alerts).values(extra))
