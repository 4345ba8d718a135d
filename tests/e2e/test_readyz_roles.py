"""Ready means ready for its role (spec section 10): ``ews run --role R`` answers /readyz 200 once what R runs is up."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.service_process import ServiceProcess

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (apt-get install mosquitto)")]

CHECKS = {
    "api": {"database"},
    "worker": {"database", "dispatcher", "scheduler", "sms"},
    "ingest": {"database", "mqtt"},
    "all": {"database", "mqtt", "sms"},
}


def test_each_role_is_ready_with_the_checks_of_what_it_runs(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    prefix = f"ready/{uuid.uuid4().hex[:8]}"
    with private_mosquitto() as broker:
        for role, expected in CHECKS.items():
            service = ServiceProcess(tmp_path / role, database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                     role=role)
            with service.start(timeout=90):
                with urllib.request.urlopen(service.base_url + "/readyz", timeout=10) as answer:
                    body = json.load(answer)
            assert answer.status == 200 and body["status"] == "ready", (role, body)
            assert set(body["checks"]) == expected, role
            assert all(value for name, value in body["checks"].items() if name != "sms"), (role, body["checks"])
