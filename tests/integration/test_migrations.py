"""Migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.schema import metadata


def test_upgrade_creates_every_table_and_matches_the_schema(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    engine.dispose()
    assert diff == [], 'schema.py changed: run `python -m service.db.regen "what changed"`'


def test_0006_ranks_the_notifications_of_the_first_release(database_url):
    """Rows written before 0006 (no priority column) get the rank alerts.priority gives them today."""
    import sqlalchemy as sa

    from alerts import priority

    engine = make_engine(database_url)
    upgrade(engine, "0005")  # the previous head
    now = "2026-11-30 06:00:00+00:00"
    with engine.begin() as conn:
        for alert_id, station, exercise in ((1, "PKR-LASKAP", False), (2, "MLL-MALILI", True)):
            conn.execute(sa.text("INSERT INTO alerts (id, station_id, kind, level, peak_level, state, opened_at, exercise) "
                                 "VALUES (:id, :station, 'water_level', 'awas', 'awas', 'active', :now, :ex)"),
                         {"id": alert_id, "station": station, "now": now, "ex": exercise})
        for event_id, alert_id, level in ((1, 1, "awas"), (2, 1, "siaga"), (3, 2, "awas")):
            conn.execute(sa.text("INSERT INTO alert_events (id, alert_id, type, level, at, recorded_at, dispatch) "
                                 "VALUES (:id, :alert, 'raised', :level, :now, :now, 'done')"),
                         {"id": event_id, "alert": alert_id, "level": level, "now": now})
        rows = [(1, 1, 1, "warning"), (2, 2, 1, "warning"), (3, 3, 2, "warning"), (4, None, 1, "reminder"),
                (5, None, None, "broadcast"), (6, None, None, "operational")]
        for nid, event_id, alert_id, kind in rows:
            conn.execute(sa.text("INSERT INTO notifications (id, event_id, alert_id, phone, language, kind, body, status, "
                                 "attempts, created_at, updated_at) VALUES (:id, :event, :alert, '+62812', 'id', :kind, "
                                 "'x', 'pending', 0, :now, :now)"),
                         {"id": nid, "event": event_id, "alert": alert_id, "kind": kind, "now": now})
    upgrade(engine)
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, priority FROM notifications")).all())
    engine.dispose()
    assert got == {1: priority.priority("warning", "awas"), 2: priority.priority("warning", "siaga"),
                   3: priority.priority("warning", "awas", exercise=True), 4: priority.priority("reminder"),
                   5: priority.priority("broadcast"), 6: priority.priority("operational")}
