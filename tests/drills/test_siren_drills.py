"""Siren drill: SIGKILL of ``ews run`` between a siren command and its ack loses nothing (spec section 12).

The command was stored before it was published; after the restart the new process re-sends it with
the same ``command_id`` (never a second, different ``on``) and records the ack when it comes.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.drills.helpers import wait_until
from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.ingest import iso
from tests.support.mqtt import Publisher
from tests.support.service_process import ServiceProcess, sqlite_count
from tests.support.siren_controller import TestSirenController

pytestmark = [pytest.mark.drill, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (apt-get install mosquitto)")]

TIMEOUT_S = 5.0


def test_sigkill_between_command_and_ack_loses_no_siren_command(tmp_path, figure):
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    with private_mosquitto() as broker:
        service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 client_id=f"ews-drill-{uuid.uuid4().hex[:8]}",
                                 env={"EWS_SEED": "luwu-timur", "EWS_SIREN_ACK_TIMEOUT_S": str(TIMEOUT_S),
                                      "EWS_LEADER_LEASE_S": "3"}).start()
        request = urllib.request.Request(
            f"{service.base_url}/api/v1/stations/KLN-WOTU", method="PATCH",
            data=json.dumps({"sirens": [{"id": "SRN-WOTU-1", "at": "siaga"}]}).encode(),
            headers={"Authorization": f"Bearer {service.token('admin')}", "Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()
        controller = TestSirenController(broker.url, prefix, "SRN-WOTU-1", silent=True)
        publisher = Publisher(broker.url)
        try:
            publisher.publish(f"{prefix}/stations/KLN-WOTU/readings",
                              {"ts": iso(datetime.now(timezone.utc) - timedelta(minutes=1)),
                               "values": {"water_level": 3.6}})
            publisher.wait_all()
            [first] = wait_until(lambda: controller.received(), 30, "the on command")
            service.kill()  # between the command and its ack
            killed = time.monotonic()
            service.start()
            again = wait_until(lambda: [c for c in controller.received()[1:]], 60, "the command after the restart")
            resent_after_s = time.monotonic() - killed
            controller.answer(again[0])
            wait_until(lambda: sqlite_count(database_url, "SELECT COUNT(*) FROM siren_commands WHERE status = 'acked'"),
                       30, "the ack recorded")
            commands = sqlite_count(database_url, "SELECT COUNT(*) FROM siren_commands")
            ids = {c["command_id"] for c in controller.received()}
        finally:
            publisher.close()
            controller.close()
            service.stop()
    figure("re-sent after the kill", f"{resent_after_s:.1f} s")
    figure.summary(f"SIGKILL after command {first['command_id'][:8]}: re-sent with the same id "
                   f"{resent_after_s:.1f} s later, acked; {commands} command(s) stored")
    assert ids == {first["command_id"]} and commands == 1
