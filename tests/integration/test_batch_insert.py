"""The ingest's one-statement insert of a batch's readings (service/samples.insert_batch)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from service import samples
from service.db.schema import readings, stations


def test_a_reading_timed_at_an_earlier_rows_arrival_is_stored_in_the_same_batch(services):
    # On SQLite each distinct time is turned into its stored text once per batch; a reading whose ts is the
    # very arrival time of an earlier row failed the whole batch (then retried one message at a time).
    with services.engine.connect() as conn:
        first, second = conn.execute(sa.select(stations.c.id).order_by(stations.c.id).limit(2)).scalars()
    at = datetime(2026, 12, 1, 21, 4, 30, 447952, tzinfo=timezone.utc)
    rows = [(first, "water_level", at - timedelta(seconds=60), 1.25, at),
            (second, "water_level", at, 1.5, at + timedelta(milliseconds=200))]
    with services.engine.begin() as conn:
        inserted = samples.insert_batch(conn, rows)
    assert inserted[first][0] == {("water_level", at - timedelta(seconds=60))}
    assert inserted[second][0] == {("water_level", at)}
    with services.engine.connect() as conn:
        stored = conn.execute(sa.select(readings.c.station_id, readings.c.ts, readings.c.value)
                              .order_by(readings.c.station_id)).all()
    assert [(s, ts, v) for s, ts, v in stored] == [(first, at - timedelta(seconds=60), 1.25), (second, at, 1.5)]
