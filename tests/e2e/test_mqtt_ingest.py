"""Through a real broker into a real database: 10,000 samples, duplicates and out of order, stored exactly once."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from config.settings import parse_mqtt_url
from service.db.schema import dead_letters, readings
from service.mqtt_ingest import MqttIngest
from tests.support.mqtt import Publisher
from tests.support.services import make_services

pytestmark = pytest.mark.broker

GAUGES = ["PKR-LASKAP", "MLL-MALILI", "LAO-HARAPAN", "KLN-MANGKUTANA", "KLN-KALAENA", "KLN-WOTU", "AGK-ANGKONA", "LRN-PARUMPANAI"]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def make_stream(total: int, duplicate_share: float = 0.1, seed: int = 7):
    """Unique (station, ts, value) samples plus re-sent copies, partly shuffled; return (messages, unique keys)."""
    rng = random.Random(seed)
    unique_count = int(total * (1 - duplicate_share))
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    samples = [(GAUGES[i % len(GAUGES)], start + timedelta(seconds=10 * (i // len(GAUGES))), round(rng.uniform(0.2, 1.0), 3))
               for i in range(unique_count)]
    stream = samples + [rng.choice(samples) for _ in range(total - unique_count)]
    # Local shuffles: out of order within windows, like a gateway flushing a backlog after live data.
    for begin in range(0, len(stream), 200):
        window = stream[begin:begin + 200]
        rng.shuffle(window)
        stream[begin:begin + 200] = window
    rng.shuffle(stream[: len(stream) // 10])
    return stream, {(s, ts) for s, ts, _ in samples}


def publish_stream(publisher: Publisher, prefix: str, stream) -> None:
    """Publish mostly single samples, and every 50th message as a small backlog array."""
    i = 0
    while i < len(stream):
        if i % 50 == 0:
            chunk = stream[i:i + 20]
            station = chunk[0][0]
            same = [c for c in chunk if c[0] == station]
            body = [{"ts": iso(ts), "values": {"water_level": v}} for _, ts, v in same]
            publisher.publish(f"{prefix}/stations/{station}/readings", body)
            for other in [c for c in chunk if c[0] != station]:
                publisher.publish(f"{prefix}/stations/{other[0]}/readings", {"ts": iso(other[1]), "values": {"water_level": other[2]}})
            i += len(chunk)
        else:
            station, ts, value = stream[i]
            publisher.publish(f"{prefix}/stations/{station}/readings", {"ts": iso(ts), "seq": i, "values": {"water_level": value}})
            i += 1


def count_readings(services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(readings).where(readings.c.metric == "water_level")).scalar_one()


def wait_for_count(services, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = count_readings(services)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        count = count_readings(services)
    time.sleep(0.5)  # anything extra (a duplicate) would show up now
    return count_readings(services)


@pytest.mark.slow
def test_ten_thousand_samples_with_duplicates_are_stored_exactly_once(database_url, broker_url, topic_prefix):
    services = make_services(database_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    ingest = MqttIngest(parse_mqtt_url(broker_url), topic_prefix, f"ews-test-{uuid.uuid4().hex[:8]}", services.ingestor.ingest)
    ingest.start()
    assert ingest.wait_connected(15)
    time.sleep(0.3)  # the SUBSCRIBE is on its way
    stream, unique = make_stream(10_000)
    publisher = Publisher(broker_url)
    try:
        publish_stream(publisher, topic_prefix, stream)
        publisher.wait_all()
        stored = wait_for_count(services, len(unique), timeout=180)
    finally:
        publisher.close()
        ingest.stop()
    with services.engine.connect() as conn:
        keys = {(r.station_id, r.ts) for r in conn.execute(select(readings.c.station_id, readings.c.ts))}
        rejected = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    services.engine.dispose()
    assert stored == len(unique) == 9_000
    assert keys == unique
    assert rejected == 0


def test_a_broken_payload_does_not_stop_the_ingest_loop(sqlite_url, broker_url, topic_prefix):
    services = make_services(sqlite_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    ingest = MqttIngest(parse_mqtt_url(broker_url), topic_prefix, f"ews-test-{uuid.uuid4().hex[:8]}", services.ingestor.ingest)
    ingest.start()
    assert ingest.wait_connected(15)
    time.sleep(0.3)
    publisher = Publisher(broker_url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        # Junk up to the broker's payload bound (config/mosquitto.conf: 256 KiB; past it the broker drops it).
        for junk in (b"\x00\xff", b"{", b"[]", b"null", b"A" * 250_000):
            publisher.publish(f"{topic_prefix}/stations/PKR-LASKAP/readings", junk)
        publisher.publish(f"{topic_prefix}/stations/PKR-LASKAP/readings", {"ts": iso(now), "values": {"water_level": 1.0}})
        publisher.wait_all()
        assert wait_for_count(services, 1, timeout=30) == 1
    finally:
        publisher.close()
        ingest.stop()
    with services.engine.connect() as conn:
        reasons = sorted(r.reason for r in conn.execute(select(dead_letters.c.reason)))
    services.engine.dispose()
    # (Over 256 KiB is refused by the broker itself: tests/e2e/test_broker_acl.py; too_large by the service: test_ingest.)
    assert reasons == ["malformed_json", "malformed_json", "malformed_json", "not_an_object", "not_an_object"]
