"""The embedded broker takes the next free port when its own is taken, and the local tools find it."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sensors import mqttlink
from service.broker import EmbeddedBroker, forget_endpoint, record_endpoint
from service.cli import recorded_broker_url
from tests.support.infra import free_port, wait_until
from tests.support.services import make_services

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def test_a_taken_port_moves_the_broker_to_the_next_free_one_and_says_so_once(caplog):
    taken = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        with caplog.at_level(logging.WARNING, logger="service.broker"):
            broker = EmbeddedBroker("127.0.0.1", taken).start()
        try:
            assert broker.port != taken and broker.url.endswith(f":{broker.port}")
            moved = [r.getMessage() for r in caplog.records if "is taken" in r.getMessage()]
            assert len(moved) == 1 and f"port {taken}" in moved[0] and f"on {broker.port}" in moved[0]
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{os.getpid()}")
            client.username_pw_set("probe")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            wait_until(client.is_connected, 15, "a client to connect to the moved broker")
            client.disconnect()
            client.loop_stop()
        finally:
            broker.stop()


def test_the_recorded_broker_is_found_on_the_same_database_and_only_there(database_url, tmp_path):
    services = make_services(database_url, seed=None)
    env = {"EWS_DATABASE_URL": database_url}
    assert recorded_broker_url(env) is None  # nothing recorded yet
    record_endpoint(services.engine, "mqtt://ews@127.0.0.1:1884", "host-1", NOW)
    assert recorded_broker_url(env) == "mqtt://ews@127.0.0.1:1884"
    assert recorded_broker_url({**env, "EWS_MQTT_URL": "mqtt://broker:1883"}) is None  # an explicit broker wins
    forget_endpoint(services.engine, "someone-else")
    assert recorded_broker_url(env) == "mqtt://ews@127.0.0.1:1884"  # only its own ews run removes it
    forget_endpoint(services.engine, "host-1")
    assert recorded_broker_url(env) is None
    services.engine.dispose()


def test_looking_never_creates_a_database_and_a_bad_setting_means_the_default(tmp_path):
    missing = tmp_path / "none.db"
    assert recorded_broker_url({"EWS_DATABASE_URL": f"sqlite:///{missing}"}) is None
    assert not missing.exists()
    assert recorded_broker_url({"EWS_DATABASE_URL": f"sqlite:///{missing}", "EWS_HTTP_PORT": "x"}) is None


@pytest.mark.parametrize(("given", "env", "recorded", "expected"), [
    ("mqtt://a:1", {"EWS_MQTT_URL": "mqtt://b:2"}, "mqtt://c:3", ("mqtt://a:1", "--mqtt-url")),
    (None, {"EWS_MQTT_URL": "mqtt://b:2"}, "mqtt://c:3", ("mqtt://b:2", "EWS_MQTT_URL")),
    (None, {"EWS_EMBEDDED_MQTT_PORT": "1999"}, "mqtt://c:3", ("mqtt://c:3", "ews run's embedded broker, recorded in the database")),
    (None, {"EWS_EMBEDDED_MQTT_PORT": "1999"}, None, ("mqtt://127.0.0.1:1999", "the embedded broker's default port")),
])
def test_the_tools_choose_their_broker_in_this_order(given, env, recorded, expected):
    assert mqttlink.resolve_broker_url(given, env, lambda: recorded) == expected
