"""Shared fixtures: real databases (SQLite always, PostgreSQL with EWS_TEST_DATABASE_URL) and real brokers."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.infra import MOSQUITTO, fresh_database, postgres_base_url, private_mosquitto

DATABASE_KINDS = ["sqlite", "postgresql"]
BROKER_KINDS = ["embedded", "mosquitto"]


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request, tmp_path):
    """A fresh empty database: SQLite, and PostgreSQL when EWS_TEST_DATABASE_URL is set."""
    if request.param == "postgresql" and not postgres_base_url():
        pytest.skip("PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    """A fresh SQLite database file."""
    with fresh_database("sqlite", tmp_path) as url:
        yield url


@pytest.fixture(params=BROKER_KINDS)
def broker_url(request):
    """An MQTT broker: the embedded amqtt, and Mosquitto (a private one with our production limits, else EWS_TEST_MQTT_URL)."""
    if request.param == "mosquitto":
        if MOSQUITTO is not None:
            with private_mosquitto() as broker:
                yield broker.url
            return
        url = os.environ.get("EWS_TEST_MQTT_URL")
        if not url:
            pytest.skip("Mosquitto: install mosquitto or set EWS_TEST_MQTT_URL (see .ci/run)")
        yield url
        return
    from service.broker import EmbeddedBroker
    from tests.support.infra import free_port

    broker = EmbeddedBroker("127.0.0.1", free_port()).start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix():
    """A topic prefix no other test uses, so tests can share one broker."""
    return f"ewstest/{uuid.uuid4().hex[:10]}"
