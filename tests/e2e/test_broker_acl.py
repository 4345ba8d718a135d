"""The broker enforces the registry (spec section 9), on a real Mosquitto running config/mosquitto.conf
with the ACL `ews broker acl` prints and a mosquitto_passwd file: a gateway writes only its stations,
nobody takes over the service's session, and payloads are bounded."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from config.settings import parse_mqtt_url
from service.db.schema import api_tokens, dead_letters, readings
from service.mqtt_ingest import MqttIngest
from service.tokens import create_token
from tests.support.infra import (MOSQUITTO, MOSQUITTO_PASSWD, PRODUCTION_PREFIX, SERVICE, SERVICE_PW, acl_from_cli,
                                 production_mosquitto, wait_until)
from tests.support.ingest import iso
from tests.support.mqtt import Publisher, Subscriber
from tests.support.services import make_services

pytestmark = [pytest.mark.broker, pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="needs mosquitto and mosquitto_passwd (apt-get install mosquitto)")]

PREFIX = PRODUCTION_PREFIX  # a private broker
GATEWAY, GATEWAY_PW = "gw-laskap", "gateway-secret"
INTRUDER, INTRUDER_PW = "gw-wotu", "other-secret"


@pytest.fixture
def registry(sqlite_url):
    services = make_services(sqlite_url)
    create_token(services.engine, "gateway", GATEWAY, stations=["PKR-LASKAP"])
    create_token(services.engine, "gateway", INTRUDER, stations=["KLN-WOTU"])
    yield services
    services.engine.dispose()


@pytest.fixture
def broker(registry, sqlite_url):
    users = {SERVICE: SERVICE_PW, GATEWAY: GATEWAY_PW, INTRUDER: INTRUDER_PW}
    with production_mosquitto(users, acl_from_cli(sqlite_url)) as running:
        yield running


@pytest.fixture
def service(registry, broker):
    """The service's ingest as its own broker user, with the client id README documents."""
    changes: list[bool] = []
    # The shared subscription production uses with PostgreSQL: the ACL is checked after the group name.
    ingest = MqttIngest(parse_mqtt_url(broker.url_for(SERVICE, SERVICE_PW)), PREFIX, SERVICE,
                        registry.ingestor.ingest, on_connection_change=changes.append, shared_group="ews")
    ingest.start()
    assert ingest.wait_connected(15)
    ingest.connection_changes = changes
    yield ingest
    ingest.stop()


def sample(minutes_ago: float, value: float) -> dict:
    ts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {"ts": iso(ts), "values": {"water_level": value}}


def stored(services) -> list[tuple[str, float]]:
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(readings.c.station_id, readings.c.value)
                                               .order_by(readings.c.id))]


def test_a_gateway_publishing_for_another_station_never_reaches_the_service(registry, broker, service):
    gateway = Publisher(broker.url_for(GATEWAY, GATEWAY_PW))
    try:
        # The broker still acknowledges the forbidden publish (MQTT 3.1.1): check the subscriber side.
        gateway.publish(f"{PREFIX}/stations/KLN-WOTU/readings", sample(3, 4.5))
        gateway.publish(f"{PREFIX}/stations/KLN-WOTU/status", b"offline")
        gateway.publish(f"{PREFIX}/stations/PKR-LASKAP/readings", sample(2, 1.25))
        gateway.wait_all()
        wait_until(lambda: stored(registry), 30, "the gateway's own station's reading")
    finally:
        gateway.close()
    assert stored(registry) == [("PKR-LASKAP", 1.25)]
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one() == 0


def test_the_acl_grants_each_gateway_its_stations_topics_and_the_service_reads_them(broker):
    watcher = Subscriber(broker.url_for(SERVICE, SERVICE_PW), [
        f"{PREFIX}/stations/+/readings", f"{PREFIX}/stations/+/status", f"{PREFIX}/stations/+/backlog",
        f"{PREFIX}/exercise/stations/+/readings"], client_id=SERVICE)
    gateway = Publisher(broker.url_for(GATEWAY, GATEWAY_PW))
    try:
        assert [rc.is_failure for rc in watcher.wait_subscribed()] == [False] * 4
        own = [f"{PREFIX}/stations/PKR-LASKAP/{leaf}" for leaf in ("readings", "status", "backlog")]
        own.append(f"{PREFIX}/exercise/stations/PKR-LASKAP/readings")
        for topic in [f"{PREFIX}/stations/KLN-WOTU/backlog", f"{PREFIX}/exercise/stations/KLN-WOTU/readings",
                      f"{PREFIX}/sirens/SRN-1/command", *own]:
            gateway.publish(topic, b"{}")
        gateway.wait_all()
        wait_until(lambda: len(watcher.messages) >= len(own), 15, "the gateway's own topics")
        assert sorted(watcher.topics()) == sorted(own)
        watcher.messages.clear()
        # A gateway may read nothing (Mosquitto grants the SUBSCRIBE, then delivers it nothing).
        nosy = Subscriber(broker.url_for(INTRUDER, INTRUDER_PW), [f"{PREFIX}/stations/+/readings"])
        nosy.wait_subscribed()
        gateway.publish(own[0], b"marker")
        gateway.wait_all()
        wait_until(lambda: (own[0], b"marker") in watcher.messages, 15, "the marker at the service")
        assert nosy.messages == []
        nosy.close()
        anonymous = Subscriber(f"mqtt://127.0.0.1:{broker.port}", [f"{PREFIX}/#"])
        wait_until(lambda: anonymous.events, 15, "the broker's answer to an anonymous client")
        assert anonymous.events[0].startswith("refused")
        anonymous.close()
    finally:
        gateway.close()
        watcher.close()


def test_a_revoked_token_drops_out_of_the_acl_at_the_next_reload(registry, broker, sqlite_url):
    watcher = Subscriber(broker.url_for(SERVICE, SERVICE_PW), [f"{PREFIX}/stations/+/readings"])
    watcher.wait_subscribed()
    with registry.engine.begin() as conn:
        conn.execute(sa.update(api_tokens).where(api_tokens.c.name == GATEWAY).values(revoked_at=datetime.now(timezone.utc)))
    acl = acl_from_cli(sqlite_url)
    assert f"user {GATEWAY}" not in acl and f"user {INTRUDER}" in acl
    broker.reload(acl)
    intruder = Publisher(broker.url_for(INTRUDER, INTRUDER_PW))
    try:
        # The broker applies the reload between two messages: wait until the other gateway's marker
        # passes, then the revoked one's publish (its password still works) reaches nobody.
        wait_until(lambda: _marker_arrives(intruder, watcher), 15, "the broker to reload its ACL")
        revoked = Publisher(broker.url_for(GATEWAY, GATEWAY_PW))
        revoked.publish(f"{PREFIX}/stations/PKR-LASKAP/readings", b"revoked")
        revoked.wait_all()
        revoked.close()
        intruder.publish(f"{PREFIX}/stations/KLN-WOTU/readings", b"after")
        intruder.wait_all()
        wait_until(lambda: (f"{PREFIX}/stations/KLN-WOTU/readings", b"after") in watcher.messages, 15, "the marker")
        assert b"revoked" not in [payload for _, payload in watcher.messages]
    finally:
        intruder.close()
        watcher.close()


def _marker_arrives(publisher: Publisher, watcher: Subscriber) -> bool:
    marker = uuid.uuid4().hex.encode()
    publisher.publish(f"{PREFIX}/stations/KLN-WOTU/readings", marker)
    publisher.wait_all()
    try:
        wait_until(lambda: marker in [payload for _, payload in watcher.messages], 1, "marker", interval=0.05)
    except AssertionError:
        return False
    return True


def test_no_credential_but_the_services_own_takes_over_the_services_session(registry, broker, service):
    # Today's attack: connect with the service's client id, kick it off and take its queued readings.
    intruder = Subscriber(broker.url_for(INTRUDER, INTRUDER_PW), [f"{PREFIX}/stations/+/readings"], client_id=SERVICE)
    gateway = Publisher(broker.url_for(GATEWAY, GATEWAY_PW))
    try:
        wait_until(lambda: intruder.events, 15, "the intruder's connection")
        assert intruder.events[0] == "connected"  # as itself: the broker made its client id its user name
        intruder.wait_subscribed()
        gateway.publish(f"{PREFIX}/stations/PKR-LASKAP/readings", sample(1, 0.9))
        gateway.wait_all()
        wait_until(lambda: stored(registry), 30, "a reading through the service's own session")
        assert service.connection_changes == [True]  # never kicked
        assert service.connected and intruder.messages == []  # and it may read nothing
    finally:
        gateway.close()
        intruder.close()


def test_the_broker_bounds_payloads(registry, broker, service):
    gateway = Publisher(broker.url_for(GATEWAY, GATEWAY_PW))
    topic = f"{PREFIX}/stations/PKR-LASKAP/readings"
    try:
        gateway.publish(topic, b"[" + b" " * (256 * 1024 + 200) + b"]")  # over 256 KiB: acknowledged and dropped
        gateway.publish(topic, sample(2, 0.7))
        gateway.wait_all()
        wait_until(lambda: stored(registry), 30, "the reading behind the oversized one")
    finally:
        gateway.close()
    huge = Subscriber(broker.url_for(GATEWAY, GATEWAY_PW), [])
    wait_until(lambda: huge.events, 15, "the gateway's connection")
    huge.client.publish(topic, b"x" * (1 << 20), qos=1)  # a packet past max_packet_size: the client is dropped
    wait_until(lambda: "disconnected" in huge.events, 15, "the broker to drop a 1 MiB packet")
    huge.client.loop_stop()
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one() == 0
    assert stored(registry) == [("PKR-LASKAP", 0.7)]
