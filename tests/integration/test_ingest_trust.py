"""Spec section 9 on the ingest path, on a real database: a metric the station does not measure,
a sample that cannot be overwritten, and a message the database refuses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from service.db.schema import alerts, dead_letters
from service.http import create_app
from tests.support.ingest import iso, message, stored
from tests.support.services import make_services


def dead(services) -> list[dict]:
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(dead_letters).order_by(dead_letters.c.id)).mappings()]


def minutes_ago(n: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=n)


def test_a_metric_the_station_does_not_measure_is_rejected_and_the_others_are_kept(services):
    # ARR-MALILI is a rain gauge (rain_tips, battery, signal): a water_level there is never judged.
    ts = minutes_ago(1)
    result = services.ingestor.ingest([message("ARR-MALILI", {"ts": iso(ts), "values": {
        "water_level": 3.5, "battery": 12.6, "signal": -80}})])[0]
    assert sorted(s.metric for s in result.accepted) == ["battery", "signal"]
    assert [(r.reason, r.metric, r.index) for r in result.rejected] == [("metric_not_configured", "water_level", 0)]
    assert stored(services, "ARR-MALILI", "water_level") == []
    assert stored(services, "ARR-MALILI", "battery") == [(ts, 12.6)]
    assert [row["reason"] for row in dead(services)] == ["metric_not_configured"]
    with services.engine.connect() as conn:
        assert conn.execute(select(alerts)).all() == []


def test_a_conflicting_duplicate_keeps_the_first_value_and_is_a_dead_letter(services):
    ts = minutes_ago(5)
    first = services.ingestor.ingest([message("PKR-LASKAP", {"ts": iso(ts), "values": {"water_level": 0.4}})])[0]
    # Someone pre-claimed the timestamp: the real reading of the same (station, metric, ts) arrives later.
    real = services.ingestor.ingest([message("PKR-LASKAP", {"ts": iso(ts), "values": {"water_level": 3.9, "battery": 12.4}})])[0]
    assert len(first.accepted) == 1
    assert [s.metric for s in real.accepted] == ["battery"] and real.duplicates == 0
    assert [(r.reason, r.metric, r.index) for r in real.rejected] == [("conflicting_duplicate", "water_level", 0)]
    assert "already stored as 0.4" in real.rejected[0].detail
    assert stored(services, "PKR-LASKAP", "water_level") == [(ts, 0.4)]
    assert [row["reason"] for row in dead(services)] == ["conflicting_duplicate"]
    assert services.metrics.readings_rejected.labels("conflicting_duplicate")._value.get() == 1


def test_the_same_value_again_changes_nothing_and_is_no_dead_letter(services):
    ts = minutes_ago(5)
    body = {"ts": iso(ts), "values": {"water_level": 1.25}}
    services.ingestor.ingest([message("PKR-LASKAP", body)])
    again = services.ingestor.ingest([message("PKR-LASKAP", body), message("PKR-LASKAP", body)])
    assert [(r.duplicates, r.rejected) for r in again] == [(1, []), (1, [])]
    assert dead(services) == []


def test_conflicts_inside_one_batch_and_one_payload_are_found_too(services):
    ts = minutes_ago(3)
    batch = [message("MLL-MALILI", [{"ts": iso(ts), "values": {"water_level": 1.0}},
                                    {"ts": iso(ts), "values": {"water_level": 1.0}},
                                    {"ts": iso(ts), "values": {"water_level": 1.7}}]),
             message("MLL-MALILI", {"ts": iso(ts), "values": {"water_level": 2.2}})]
    first, second = services.ingestor.ingest(batch)
    assert len(first.accepted) == 1 and first.duplicates == 1
    assert [(r.reason, r.index) for r in first.rejected] == [("conflicting_duplicate", 2)]
    assert [(r.reason, r.index) for r in second.rejected] == [("conflicting_duplicate", 0)]
    assert stored(services, "MLL-MALILI", "water_level") == [(ts, 1.0)]


def test_many_skipped_samples_are_settled_in_chunks(services):
    start = minutes_ago(600)
    body = [{"ts": iso(start + timedelta(seconds=30 * i)), "values": {"water_level": 1.0, "battery": 12.0}}
            for i in range(900)]
    services.ingestor.ingest([message("LAO-HARAPAN", body)])
    body[899]["values"]["water_level"] = 1.5
    again = services.ingestor.ingest([message("LAO-HARAPAN", body)])[0]
    assert again.duplicates == 1799 and not again.accepted
    assert [(r.reason, r.index) for r in again.rejected] == [("conflicting_duplicate", 899)]


def test_the_conflict_counter_is_in_metrics(services):
    ts = minutes_ago(2)
    services.ingestor.ingest([message("KLN-WOTU", {"ts": iso(ts), "values": {"water_level": 1.0}})])
    services.ingestor.ingest([message("KLN-WOTU", {"ts": iso(ts), "values": {"water_level": 4.5}})])
    app = create_app(services)
    body = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'ews_readings_rejected_total{reason="conflicting_duplicate"} 1.0' in body


@pytest.fixture
def refusing_postgres(database_url):
    """PostgreSQL that refuses one value, as it refuses any value it cannot hold (SQLSTATE 22003, a DataError)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a value the database refuses: PostgreSQL")
    services = make_services(database_url)
    with services.engine.begin() as conn:
        conn.execute(text("""
            CREATE FUNCTION refuse_666() RETURNS trigger AS $$
            BEGIN
              IF NEW.value = 6.66 THEN
                RAISE EXCEPTION 'value % out of range', NEW.value USING ERRCODE = 'numeric_value_out_of_range';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql"""))
        conn.execute(text("CREATE TRIGGER refuse_666 BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse_666()"))
    yield services
    services.engine.dispose()


def test_a_message_the_database_refuses_is_isolated_and_kept_whole(refusing_postgres):
    services = refusing_postgres
    ts = minutes_ago(1)
    poison = message("PKR-LASKAP", {"ts": iso(ts), "values": {"water_level": 6.66}, "pad": "x" * 1_000})
    good = message("MLL-MALILI", {"ts": iso(ts), "values": {"water_level": 1.1}})
    results = services.ingestor.ingest([poison, good])
    assert [r.reason for r in results[0].rejected] == ["internal_error"]
    assert "out of range" in results[0].rejected[0].detail
    assert len(results[1].accepted) == 1
    alone = services.ingestor.ingest([message("PKR-LASKAP", {"ts": iso(ts), "values": {"water_level": 6.66}})])[0]
    assert [r.reason for r in alone.rejected] == ["internal_error"]
    letters = dead(services)
    assert [row["reason"] for row in letters] == ["internal_error", "internal_error"]
    assert letters[0]["payload"] == poison.payload.decode()  # whole, for replay
    assert stored(services, "MLL-MALILI", "water_level") == [(ts, 1.1)]
