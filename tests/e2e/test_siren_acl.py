"""Siren topics in ``ews broker acl`` (spec sections 9 and 12), on a real Mosquitto running
config/mosquitto.conf: the service writes every siren's command topic and reads the acks; each siren's
user (its id) reads only its own command topic and writes only its own ack topic."""

from __future__ import annotations


import pytest
import sqlalchemy as sa

from service.db.schema import stations
from tests.support.infra import (MOSQUITTO, MOSQUITTO_PASSWD, PRODUCTION_PREFIX, SERVICE, SERVICE_PW, acl_from_cli,
                                 production_mosquitto, wait_until)
from tests.support.mqtt import Subscriber
from tests.support.services import make_services

pytestmark = [pytest.mark.broker, pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="needs mosquitto and mosquitto_passwd (apt-get install mosquitto)")]

PREFIX = PRODUCTION_PREFIX
SIREN, SIREN_PW = "SRN-WOTU-1", "siren-secret"
OTHER, OTHER_PW = "SRN-MALILI-1", "other-secret"


@pytest.fixture
def broker(sqlite_url):
    services = make_services(sqlite_url)
    with services.engine.begin() as conn:
        conn.execute(sa.update(stations).where(stations.c.id == "KLN-WOTU").values(sirens=[{"id": SIREN, "at": "awas"}]))
        conn.execute(sa.update(stations).where(stations.c.id == "MLL-MALILI").values(sirens=[{"id": OTHER, "at": "awas"}]))
    services.engine.dispose()
    acl = acl_from_cli(sqlite_url)
    assert f"user {SIREN}\ntopic read {PREFIX}/sirens/{SIREN}/command\ntopic write {PREFIX}/sirens/{SIREN}/ack" in acl
    with production_mosquitto({SERVICE: SERVICE_PW, SIREN: SIREN_PW, OTHER: OTHER_PW}, acl) as running:
        yield running


def test_each_siren_reads_its_own_commands_and_writes_its_own_acks(broker):
    service_acks = Subscriber(broker.url_for(SERVICE, SERVICE_PW), [f"{PREFIX}/sirens/+/ack",
                                                                     f"{PREFIX}/stations/+/readings"])
    siren = Subscriber(broker.url_for(SIREN, SIREN_PW), [f"{PREFIX}/sirens/{SIREN}/command"])
    nosy = Subscriber(broker.url_for(OTHER, OTHER_PW), [f"{PREFIX}/sirens/+/command"])
    # One connection per user: the broker keys sessions by user name (use_username_as_clientid).
    service, controller = service_acks.client, siren.client
    try:
        for subscriber in (service_acks, siren, nosy):
            subscriber.wait_subscribed()
        service.publish(f"{PREFIX}/sirens/{SIREN}/command", b'{"command_id": "c1", "action": "on"}', qos=1).wait_for_publish(15)
        wait_until(lambda: siren.messages, 15, "the command at its siren")
        assert siren.topics() == [f"{PREFIX}/sirens/{SIREN}/command"]
        # The siren may not answer for another, command another, or pose as a gauge.
        for topic in (f"{PREFIX}/sirens/{OTHER}/ack", f"{PREFIX}/sirens/{OTHER}/command",
                      f"{PREFIX}/stations/KLN-WOTU/readings", f"{PREFIX}/sirens/{SIREN}/ack"):
            controller.publish(topic, b'{"command_id": "c1", "state": "on"}', qos=1).wait_for_publish(15)
        wait_until(lambda: service_acks.messages, 15, "the siren's own ack at the service")
        service.publish(f"{PREFIX}/sirens/{OTHER}/command", b"marker", qos=1).wait_for_publish(15)
        wait_until(lambda: nosy.messages, 15, "the other siren's own command")
        assert service_acks.topics() == [f"{PREFIX}/sirens/{SIREN}/ack"]
        assert nosy.messages == [(f"{PREFIX}/sirens/{OTHER}/command", b"marker")]  # never SRN-WOTU-1's
    finally:
        for client in (service_acks, siren, nosy):
            client.close()
