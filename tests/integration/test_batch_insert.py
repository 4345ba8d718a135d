"""The ingest's one-statement insert of a batch's readings (service/batch_insert.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from alerts.model import Sample
from service import batch_insert
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
        stored = batch_insert.insert_batch(conn, rows)
    assert stored.all_new
    with services.engine.connect() as conn:
        stored = conn.execute(sa.select(readings.c.station_id, readings.c.ts, readings.c.value)
                              .order_by(readings.c.station_id)).all()
    assert [(s, ts, v) for s, ts, v in stored] == [(first, at - timedelta(seconds=60), 1.25), (second, at, 1.5)]


def _rows(station_ids, start: datetime, minutes: int, value: float = 1.0):
    return [(s, "water_level", start + timedelta(minutes=m), value + m / 100, start + timedelta(minutes=m, seconds=2))
            for m in range(minutes) for s in station_ids]


def _ids_of(conn, station_id: str) -> list[int]:
    return conn.execute(sa.select(readings.c.id).where(readings.c.station_id == station_id)
                        .order_by(readings.c.id)).scalars().all()


def test_a_batch_of_new_samples_is_all_new_and_names_each_asked_stations_first_id(services):
    with services.engine.connect() as conn:
        first, second, third = conn.execute(sa.select(stations.c.id).order_by(stations.c.id).limit(3)).scalars()
    start = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)
    with services.engine.begin() as conn:
        batch_insert.insert_batch(conn, _rows([third], start - timedelta(hours=1), 3))  # ids below the batch's
    rows = _rows([first, second, third], start, 1500)  # 4,500 rows: five statements
    with services.engine.begin() as conn:
        stored = batch_insert.insert_batch(conn, rows, frozenset({first, third}))
    with services.engine.connect() as conn:
        assert stored.all_new and stored.keys == {}
        third_ids = _ids_of(conn, third)
        assert stored.first_ids == {first: _ids_of(conn, first)[0], third: third_ids[3]}
        assert len(third_ids) == 1503
    offered = [Sample(first, "water_level", start, 1.0)]
    assert stored.inserted(first, offered) is offered  # every offered sample went in: no filtering


def test_skipped_samples_are_told_apart_from_those_inserted_now(services):
    with services.engine.connect() as conn:
        first, second = conn.execute(sa.select(stations.c.id).order_by(stations.c.id).limit(2)).scalars()
    start = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)
    with services.engine.begin() as conn:
        batch_insert.insert_batch(conn, _rows([first], start, 5))  # minutes 0-4 of the first station stored
    rows = _rows([first, second], start, 10, value=2.0)  # 0-4 of the first are taken (another value)
    with services.engine.begin() as conn:
        stored = batch_insert.insert_batch(conn, rows, frozenset({first, second}))
    assert not stored.all_new
    new_of_first = {("water_level", start + timedelta(minutes=m)) for m in range(5, 10)}
    assert stored.keys[first] == new_of_first
    assert stored.keys[second] == {("water_level", start + timedelta(minutes=m)) for m in range(10)}
    with services.engine.connect() as conn:
        assert stored.first_ids == {first: _ids_of(conn, first)[5], second: _ids_of(conn, second)[0]}
        kept = conn.execute(sa.select(readings.c.value).where(readings.c.station_id == first)
                            .order_by(readings.c.ts)).scalars().all()
    assert kept[:5] == [1.0 + m / 100 for m in range(5)]  # the first value stored wins
    offered = [Sample(first, "water_level", start + timedelta(minutes=m), 2.0 + m / 100) for m in range(10)]
    assert [s.ts for s in stored.inserted(first, offered)] == [start + timedelta(minutes=m) for m in range(5, 10)]
