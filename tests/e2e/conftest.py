"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid

import pytest

from config.settings import parse_mqtt_url
from service import gateway_status
from service.mqtt_ingest import MqttIngest


@pytest.fixture
def mqtt_ingest(broker_url, topic_prefix):
    """``start(services)``: the service's MQTT ingest on the test broker, wired as ``ews run`` wires it
    (readings to the ingestor, status messages to service.gateway_status); stopped after the test."""
    started: list[MqttIngest] = []

    def start(services) -> MqttIngest:
        ingest = MqttIngest(parse_mqtt_url(broker_url), topic_prefix, f"ews-test-{uuid.uuid4().hex[:8]}",
                            services.ingestor.ingest, on_status=lambda s: gateway_status.apply(services, s))
        ingest.start()
        assert ingest.wait_connected(15)
        started.append(ingest)
        return ingest

    yield start
    for ingest in started:
        ingest.stop()
