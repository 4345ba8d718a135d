"""A committed batch is acknowledged in one write (service/mqtt_acks.py): the broker takes every PUBACK of it."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from config.settings import parse_mqtt_url
from service.mqtt_ingest import MqttIngest
from tests.support.mqtt import Publisher

pytestmark = pytest.mark.broker


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def session(broker_url: str, topic_prefix: str, client_id: str, into: list) -> MqttIngest:
    """The service's MQTT side on a persistent session, handing each committed batch to ``into``."""
    ingest = MqttIngest(parse_mqtt_url(broker_url), topic_prefix, client_id, into.extend)
    ingest.start()
    assert ingest.wait_connected(15)
    time.sleep(0.3)  # the SUBSCRIBE is on its way
    return ingest


def test_the_same_session_gets_none_of_an_acknowledged_batch_again(broker_url, topic_prefix):
    client_id = f"ews-test-{uuid.uuid4().hex[:8]}"
    topic = f"{topic_prefix}/stations/PKR-LASKAP/readings"
    first: list = []
    ingest = session(broker_url, topic_prefix, client_id, first)
    publisher = Publisher(broker_url)
    try:
        for number in range(500):  # enough that the worker takes them in batches of many
            publisher.publish(topic, {"n": number})
        publisher.wait_all()
        wait_until(lambda: len(first) == 500)
    finally:
        ingest.stop()
    # Anything not acknowledged comes back to the session first, before the marker published after reconnecting.
    again: list = []
    ingest = session(broker_url, topic_prefix, client_id, again)
    try:
        publisher.publish(topic, {"n": "marker"})
        publisher.wait_all()
        wait_until(lambda: again)
    finally:
        ingest.stop()
        publisher.close()
    assert sorted(json.loads(m.payload)["n"] for m in first) == list(range(500))
    assert [json.loads(m.payload)["n"] for m in again] == ["marker"]
