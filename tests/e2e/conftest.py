"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import uuid

import pytest

from config.settings import parse_mqtt_url
from service import gateway_status
from service.mqtt_ingest import MqttIngest, backlog_session


@pytest.fixture
def mqtt_ingest(broker_url, topic_prefix):
    """``start(services)``: the service's MQTT ingest on the test broker, wired as ``ews run`` wires it
    (readings to the ingestor, status messages to service.gateway_status); stopped after the test."""
    started: list[MqttIngest] = []

    def start(services) -> MqttIngest:
        ingest = MqttIngest(parse_mqtt_url(broker_url), topic_prefix, f"ews-test-{uuid.uuid4().hex[:8]}",
                            services.ingestor.ingest, on_status=lambda s: gateway_status.apply(services.ingestor, s))
        ingest.start()
        assert ingest.wait_connected(15)
        started.append(ingest)
        # The backlog session (spec section 16), as ews run starts it beside the live one.
        backlog_url, backlog_id = backlog_session(parse_mqtt_url(broker_url), ingest.client_id)
        backlog = MqttIngest(backlog_url, topic_prefix, backlog_id, services.ingestor.ingest, backlog=True,
                             live=ingest)
        backlog.start()
        assert backlog.wait_connected(15)
        started.insert(0, backlog)
        ingest.backlog_session = backlog
        return ingest

    yield start
    for ingest in started:
        ingest.stop()
