"""A gateway's last will counts (spec section 9): ``offline`` on its status topic raises the offline alert
at once, through a real broker; the alert ends when the station reports again."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import parse_mqtt_url
from service.db.schema import alert_events, alerts, station_state
from tests.support.infra import wait_until
from tests.support.ingest import iso, message
from tests.support.mqtt import Publisher
from tests.support.services import make_services

pytestmark = pytest.mark.broker


@pytest.fixture
def services(sqlite_url, topic_prefix):
    services = make_services(sqlite_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    yield services
    services.engine.dispose()


def offline_alerts(services) -> list:
    with services.engine.connect() as conn:
        return conn.execute(sa.select(alerts.c.id, alerts.c.station_id, alerts.c.state)
                            .where(alerts.c.kind == "offline").order_by(alerts.c.id)).all()


def report(services, station: str, minutes_ago: float, received_minutes_ago: float = 0) -> None:
    now = datetime.now(timezone.utc)
    body = {"ts": iso(now - timedelta(minutes=minutes_ago)), "values": {"water_level": 1.0 + minutes_ago / 1000}}
    services.ingestor.ingest([message(station, body, now - timedelta(minutes=received_minutes_ago),
                                      prefix=services.settings.mqtt_topic_prefix)])


def test_a_retained_offline_raises_the_offline_alert_within_seconds(services, broker_url, topic_prefix, mqtt_ingest):
    report(services, "PKR-LASKAP", 50, received_minutes_ago=50)  # heard 50 minutes ago (stale_after_s: 30 min)
    publisher = Publisher(broker_url)
    try:
        publisher.publish(f"{topic_prefix}/stations/PKR-LASKAP/status", b"offline", retain=True)
        publisher.wait_all()
        mqtt_ingest(services)  # the service (re)starts and finds the gateway's retained will
        [alert] = wait_until(lambda: offline_alerts(services), 10, "the offline alert")
    finally:
        publisher.publish(f"{topic_prefix}/stations/PKR-LASKAP/status", b"", retain=True)  # clear the retained flag
        publisher.wait_all()
        publisher.close()
    assert (alert.station_id, alert.state) == ("PKR-LASKAP", "active")
    with services.engine.connect() as conn:
        event = conn.execute(sa.select(alert_events).where(alert_events.c.alert_id == alert.id)).one()
        online = conn.execute(sa.select(station_state.c.online).where(station_state.c.station_id == "PKR-LASKAP")).scalar_one()
    assert (event.type, event.dispatch, event.reading["status"]) == ("raised", "pending", "offline")
    assert online is False
    report(services, "PKR-LASKAP", 0)  # the station reports again: the alert ends
    assert [a.state for a in offline_alerts(services)] == ["closed"]


def test_a_gateways_will_raises_the_alert_when_its_link_drops(services, broker_url, topic_prefix, mqtt_ingest):
    mqtt_ingest(services)
    report(services, "MLL-MALILI", 1)  # it was reporting a minute ago
    broker = parse_mqtt_url(broker_url)
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311)
    gateway.username_pw_set(broker.username or "gateway", broker.password)
    gateway.will_set(f"{topic_prefix}/stations/MLL-MALILI/status", "offline", qos=1, retain=True)
    gateway.connect(broker.host, broker.port, keepalive=30)
    gateway.loop(timeout=1.0)
    try:
        gateway.socket().close()  # the GSM link drops: no DISCONNECT, so the broker publishes the will
        [alert] = wait_until(lambda: offline_alerts(services), 15, "the offline alert from the will")
        assert alert.station_id == "MLL-MALILI"
    finally:
        cleaner = Publisher(broker_url)
        cleaner.publish(f"{topic_prefix}/stations/MLL-MALILI/status", b"", retain=True)
        cleaner.wait_all()
        cleaner.close()


def test_a_stale_retained_offline_does_not_raise_while_the_station_reports(services, broker_url, topic_prefix,
                                                                           mqtt_ingest):
    publisher = Publisher(broker_url)
    try:
        publisher.publish(f"{topic_prefix}/stations/KLN-WOTU/status", b"offline", retain=True)
        publisher.publish(f"{topic_prefix}/stations/LAO-HARAPAN/status", b"offline", retain=True)
        publisher.wait_all()
        report(services, "KLN-WOTU", 1)  # reporting: its retained offline is older than its readings
        mqtt_ingest(services)
        wait_until(lambda: offline_alerts(services), 10, "the subscription (LAO-HARAPAN's retained offline)")
        # Retained messages come first at a subscription, so once this live one is applied, both were.
        publisher.publish(f"{topic_prefix}/stations/ARR-MALILI/status", b"offline")
        publisher.wait_all()
        wait_until(lambda: len(offline_alerts(services)) == 2, 10, "the offline alerts of the silent stations")
        # LAO-HARAPAN never reported: its gateway's word is all there is.
        assert sorted(a.station_id for a in offline_alerts(services)) == ["ARR-MALILI", "LAO-HARAPAN"]
    finally:
        for station in ("KLN-WOTU", "LAO-HARAPAN"):
            publisher.publish(f"{topic_prefix}/stations/{station}/status", b"", retain=True)
        publisher.wait_all()
        publisher.close()
