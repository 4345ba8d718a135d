"""Fresh readings first (spec section 16): a backlog flushed on its own topic is stored through its own session,
and a crossing measured now is judged while the backlog is still draining."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from config.settings import parse_mqtt_url
from service.db.schema import alert_events, alerts, readings
from service.mqtt_ingest import MqttIngest, backlog_session
from tests.support.ingest import iso
from tests.support.mqtt import Publisher
from tests.support.services import make_services

pytestmark = pytest.mark.broker

GAUGES = ["PKR-LASKAP", "MLL-MALILI", "LAO-HARAPAN", "KLN-MANGKUTANA"]
BACKLOG = 6000


@pytest.fixture
def services(database_url, topic_prefix):
    services = make_services(database_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    yield services
    services.engine.dispose()


def count(services, query) -> int:
    with services.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def start_sessions(services, broker_url: str, prefix: str, client_id: str) -> list[MqttIngest]:
    """The live and the backlog session, as ews run starts them."""
    live = MqttIngest(parse_mqtt_url(broker_url), prefix, client_id, services.ingestor.ingest)
    backlog_url, backlog_id = backlog_session(parse_mqtt_url(broker_url), client_id)
    backlog = MqttIngest(backlog_url, prefix, backlog_id, services.ingestor.ingest, backlog=True, live=live)
    for session in (live, backlog):
        session.start()
        assert session.wait_connected(15)
    return [backlog, live]


def test_a_fresh_crossing_is_judged_before_a_queued_backlog(services, broker_url, topic_prefix):
    # Both sessions exist at the broker; the service is stopped while a gateway flushes 6,000 old
    # readings on the backlog topic and then one fresh AWAS reading: when the service starts, the
    # fresh one is judged at once, not after the 6,000 (one session would have it last).
    client_id = f"ews-test-{uuid.uuid4().hex[:8]}"
    for session in start_sessions(services, broker_url, topic_prefix, client_id):
        session.stop()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    publisher = Publisher(broker_url)
    try:
        for i in range(BACKLOG):
            station = GAUGES[i % len(GAUGES)]
            ts = start + timedelta(seconds=30 * (i // len(GAUGES)))
            publisher.publish(f"{topic_prefix}/stations/{station}/backlog", {"ts": iso(ts), "values": {"water_level": 0.8}})
        now = datetime.now(timezone.utc).replace(microsecond=0)
        publisher.publish(f"{topic_prefix}/stations/KLN-WOTU/readings", {"ts": iso(now), "values": {"water_level": 4.9}})
        publisher.wait_all()
    finally:
        publisher.close()
    sessions = start_sessions(services, broker_url, topic_prefix, client_id)
    try:
        deadline = time.monotonic() + 180
        while count(services, select(func.count()).select_from(readings)) < BACKLOG + 1:
            assert time.monotonic() < deadline, "backlog and fresh reading not stored within 3 minutes"
            time.sleep(0.2)
    finally:
        for session in sessions:
            session.stop()
    with services.engine.connect() as conn:
        fresh_id = conn.execute(select(readings.c.id).where(readings.c.station_id == "KLN-WOTU")).scalar_one()
        first_backlog_id = conn.execute(select(func.min(readings.c.id))).scalar_one()
        raised = conn.execute(select(alert_events.c.type, alert_events.c.level).join(alerts)
                              .where(alerts.c.station_id == "KLN-WOTU")).all()
    assert [(r.type, r.level) for r in raised] == [("raised", "awas")]
    # Judged within the first backlog batches, not behind the 6,000.
    assert fresh_id - first_backlog_id < BACKLOG // 4
    assert count(services, select(func.count(func.distinct(readings.c.ts))).where(readings.c.station_id == "PKR-LASKAP")) \
        == BACKLOG // len(GAUGES)
