"""``ews run`` with ``EWS_SMS_PROVIDER=twilio,gammu`` end to end: an AWAS reading over MQTT reaches the dummy phone
through a real gammu-smsd while Twilio is not listening, and residents talk back to the modem (spec section 13)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import requests

from service.bench.common import add_subscribers
from sinks.twilio import FakeTwilio
from tests.support.gammu import GAMMU_SMSD, SKIP_REASON, GammuDaemon
from tests.support.infra import MOSQUITTO, private_mosquitto, wait_until
from tests.support.mqtt import Publisher
from tests.support.service_process import ServiceProcess
from tests.support.services import make_services

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (apt-get install mosquitto)"),
              pytest.mark.skipif(GAMMU_SMSD is None, reason=SKIP_REASON)]

STATION = "PKR-LASKAP"  # warns Malili/Laskap; AWAS at 3.0 m
AREA = {"kecamatan": "Malili", "desa": "Laskap"}


def test_awas_through_the_modem_while_twilio_is_down_and_replies_from_residents(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    seeded = make_services(database_url)
    (resident,) = add_subscribers(seeded.engine, [AREA], per_area=1)
    seeded.engine.dispose()
    prefix = f"e2e/{uuid.uuid4().hex[:8]}"
    with private_mosquitto() as broker, GammuDaemon(tmp_path / "gammu") as daemon:
        fake = FakeTwilio().start()
        fake.stop()  # Twilio unreachable: the office's internet link is down
        env = {**fake.env(), "EWS_SMS_PROVIDER": "twilio,gammu", "EWS_GAMMU_SPOOL": str(daemon.spool),
               "EWS_SMS_FAILOVER_S": "2"}
        service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 env=env, log_level="INFO")
        service.env["EWS_PUBLIC_URL"] = service.base_url
        service.start()
        try:
            api = _Api(service)
            publisher = Publisher(broker.url)
            reading = {"ts": datetime.now(timezone.utc).isoformat(), "values": {"water_level": 3.4}}
            publisher.publish(f"{prefix}/stations/{STATION}/readings", reading)
            publisher.wait_all(30)
            publisher.close()

            warning = wait_until(lambda: [n for n in api.notifications() if n["phone"] == resident
                                          and n["status"] == "sent"], 120, "the warning sent through the modem")[0]
            assert warning["provider"] == "gammu" and warning["kind"] == "warning" and warning["sent_at"]
            assert warning["body"].startswith("BPBD LUTIM: AWAS") and warning["priority"] == 0
            assert (warning["provider_sid"], resident) in daemon.transmitted()
            ready = requests.get(service.base_url + "/readyz", timeout=10)
            assert ready.status_code == 200 and "twilio" in ready.json()["warnings"][0]
            metrics = requests.get(service.base_url + "/metrics", timeout=10).text
            assert 'ews_sms_provider_up{provider="twilio"} 0.0' in metrics

            daemon.receive(resident, "BERHENTI")
            wait_until(lambda: api.subscriber(resident)["opted_out"], 60, "the resident to be opted out")
            newcomer = "+6281277770001"
            daemon.receive(newcomer, "daftar laskap")
            wait_until(lambda: api.subscriber(newcomer), 60, "the newcomer to be registered")
            fake.start()  # Twilio is back: replies still go back through the modem they came from
            replies = wait_until(lambda: (got := [n for n in api.notifications() if n["kind"] == "reply"
                                                  and n["status"] == "sent"]) and len(got) == 2 and got, 60,
                                 "both replies sent")
            assert {n["phone"] for n in replies} == {resident, newcomer} and {n["provider"] for n in replies} == {"gammu"}
            assert {number for _, number in daemon.transmitted()} == {resident, newcomer}
            assert fake.accepted() == []
        finally:
            service.stop()
            fake.stop()


class _Api:
    def __init__(self, service: ServiceProcess) -> None:
        self.base = service.base_url + "/api/v1"
        self.headers = {"Authorization": f"Bearer {service.token('operator')}"}

    def notifications(self) -> list[dict]:
        answer = requests.get(self.base + "/notifications?limit=200", headers=self.headers, timeout=10)
        answer.raise_for_status()
        return answer.json()["items"]

    def subscriber(self, phone: str) -> dict | None:
        answer = requests.get(self.base + "/subscribers", params={"phone": phone}, headers=self.headers, timeout=10)
        answer.raise_for_status()
        items = answer.json()["items"]
        return items[0] if items else None
