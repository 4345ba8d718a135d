"""The ingest path on a real database: exactly-once storage, rain counters, dead letters."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from service.db.schema import dead_letters, readings, station_state
from tests.support.ingest import iso, message, stored
from tests.support.services import make_services


@pytest.fixture
def services(database_url):
    services = make_services(database_url)
    yield services
    services.engine.dispose()


def test_a_redelivered_sample_is_stored_once(services):
    ts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    body = {"ts": iso(ts), "values": {"water_level": 1.2, "battery": 12.5}}
    first = services.ingestor.ingest([message("PKR-LASKAP", body)])[0]
    again = services.ingestor.ingest([message("PKR-LASKAP", body), message("PKR-LASKAP", body)])
    assert len(first.accepted) == 2 and first.duplicates == 0
    assert [r.duplicates for r in again] == [2, 2] and all(not r.accepted for r in again)
    assert stored(services, "PKR-LASKAP", "water_level") == [(ts, 1.2)]


def test_out_of_order_samples_are_all_kept_and_latest_is_by_measurement_time(services):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    times = [now - timedelta(minutes=m) for m in (10, 30, 20, 40)]
    for i, ts in enumerate(times):
        services.ingestor.ingest([message("MLL-MALILI", {"ts": iso(ts), "values": {"water_level": 1.0 + i}})])
    assert [ts for ts, _ in stored(services, "MLL-MALILI", "water_level")] == sorted(times)
    with services.engine.connect() as conn:
        latest = conn.execute(select(station_state.c.latest).where(station_state.c.station_id == "MLL-MALILI")).scalar_one()
    assert latest["water_level"] == {"value": 1.0, "ts": times[0].isoformat()}


def test_rain_tip_counters_become_rainfall_and_a_reset_is_not_negative_rain(services):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    counts = [1000, 1010, 1030, 4, 10]  # ARR-MALILI: 0.2 mm per tip; the gateway rebooted after 1030
    batch = [{"ts": iso(start + timedelta(minutes=10 * i)), "values": {"rain_tips": c}} for i, c in enumerate(counts)]
    services.ingestor.ingest([message("ARR-MALILI", batch)])
    rain = [value for _, value in stored(services, "ARR-MALILI", "rainfall")]
    assert rain == pytest.approx([2.0, 4.0, 0.8, 1.2])
    # The same counters again (a gateway re-sending its backlog) add no rain.
    services.ingestor.ingest([message("ARR-MALILI", batch)])
    assert len(stored(services, "ARR-MALILI", "rainfall")) == 4


def test_a_late_counter_adds_no_rain_twice(services):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    for minutes, count in ((0, 100), (20, 120)):
        services.ingestor.ingest([message("ARR-MALILI", {"ts": iso(start + timedelta(minutes=minutes)), "values": {"rain_tips": count}})])
    services.ingestor.ingest([message("ARR-MALILI", {"ts": iso(start + timedelta(minutes=10)), "values": {"rain_tips": 110}})])
    assert sum(v for _, v in stored(services, "ARR-MALILI", "rainfall")) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "station, body, reason",
    [
        ("PKR-LASKAP", b"{oops", "malformed_json"),
        ("PKR-LASKAP", b"[true]", "not_an_object"),
        ("NO-SUCH-STATION", {"ts": "2026-11-30T00:00:00Z", "values": {"water_level": 1}}, "unknown_station"),
        ("PKR-LASKAP", {"ts": "soon", "values": {"water_level": 1}}, "bad_timestamp"),
        ("PKR-LASKAP", {"ts": 4102444800, "values": {"water_level": 1}}, "ts_in_future"),
        ("PKR-LASKAP", {"ts": 1000, "values": {"water_level": 1}}, "ts_too_old"),
        ("PKR-LASKAP", {"ts": "NOW", "values": {"depth": 1}}, "unknown_metric"),
        ("PKR-LASKAP", {"ts": "NOW", "values": {"water_level": "high"}}, "not_a_number"),
        ("PKR-LASKAP", {"ts": "NOW", "values": {"water_level": 99}}, "out_of_range"),
        ("PKR-LASKAP", b" " * (256 * 1024 + 1), "too_large"),
        ("PKR-LASKAP", [{"ts": "NOW", "values": {"water_level": 1}}] * 1001, "too_many_samples"),
    ],
)
def test_every_rejection_becomes_a_dead_letter_with_its_reason(services, station, body, reason):
    now = datetime.now(timezone.utc)
    if not isinstance(body, bytes):
        body = json.loads(json.dumps(body).replace('"NOW"', json.dumps(iso(now - timedelta(minutes=1)))))
    sent = message(station, body, now)
    services.ingestor.ingest([sent])
    with services.engine.connect() as conn:
        rows = conn.execute(select(dead_letters)).mappings().all()
    assert [row["reason"] for row in rows] == [reason]
    assert rows[0]["topic"] == f"ews/v1/stations/{station}/readings"
    # The payload is kept whole up to 256 KiB (spec section 9); a too_large one is cut there.
    assert rows[0]["truncated"] == (reason == "too_large")
    assert rows[0]["payload"].encode() == sent.payload[:256 * 1024]
    assert services.metrics.readings_rejected.labels(reason)._value.get() == 1


def test_a_mixed_batch_keeps_the_good_and_dead_letters_the_bad(services):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    good = message("LAO-HARAPAN", {"ts": iso(now - timedelta(minutes=1)), "values": {"water_level": 0.5}})
    results = services.ingestor.ingest([good, message("LAO-HARAPAN", b"garbage"), message("X", b"{}")])
    assert [len(r.accepted) for r in results] == [1, 0, 0]
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(readings)).scalar_one() == 1
