"""No exercise switch on MQTT (spec section 9): anyone may publish on ``{prefix}/exercise``, and it
changes nothing. The issue's attack, through ``ews run``: a retained ``on``, then AWAS at KLN-WOTU,
must still raise a real alert and warn the residents."""

from __future__ import annotations

import pytest
import requests

from service.bench.process import ServiceProcess
from tests.support.infra import wait_until
from tests.support.mqtt import Publisher

pytestmark = pytest.mark.broker


def test_a_retained_exercise_on_does_not_mute_a_real_awas(tmp_path, sqlite_url, broker_url, topic_prefix):
    attacker = Publisher(broker_url)
    attacker.client.publish(f"{topic_prefix}/exercise", b"on", qos=1, retain=True).wait_for_publish(15)
    service = ServiceProcess(tmp_path / "service", database_url=sqlite_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur"})
    gateway = Publisher(broker_url)
    try:
        service.start()
        headers = {"Authorization": f"Bearer {service.token('admin')}"}
        api = f"{service.base_url}/api/v1"
        added = requests.post(f"{api}/subscribers", headers=headers, timeout=30,
                              json={"phone": "0812-1111-0001", "areas": [{"kecamatan": "Wotu", "desa": "Kalaena"}]})
        assert added.status_code == 201, added.text
        resident = added.json()["id"]
        # Connected and subscribed (ready): the retained flag has reached the service before the reading.
        gateway.publish(f"{topic_prefix}/stations/KLN-WOTU/readings",
                        {"ts": _now(), "values": {"water_level": 4.5}})
        gateway.wait_all()

        def warned():
            alerts = requests.get(f"{api}/alerts?station_id=KLN-WOTU", headers=headers, timeout=30).json()["items"]
            sms = requests.get(f"{api}/notifications", headers=headers, timeout=30).json()["items"]
            mine = [n for n in sms if n["subscriber_id"] == resident and n["status"] == "sent"]
            return (alerts, mine) if alerts and mine else None

        alerts, sms = wait_until(warned, 60, "the AWAS alert and the resident's SMS")
    finally:
        attacker.client.publish(f"{topic_prefix}/exercise", b"", qos=1, retain=True).wait_for_publish(15)
        attacker.close()
        gateway.close()
        service.stop()
    (alert,) = alerts
    assert (alert["kind"], alert["level"], alert["exercise"]) == ("water_level", "awas", False)
    (warning,) = sms
    assert warning["kind"] == "warning"
    assert warning["body"].startswith("BPBD LUTIM: AWAS banjir") and "LATIHAN" not in warning["body"]


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
