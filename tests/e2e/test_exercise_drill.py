"""An exercise end to end over MQTT and HTTP through ``ews run`` (spec section 10, issue 12's done-when).

Drill readings on the exercise topics raise LATIHAN messages (one segment) to staff, and to
residents only with ``residents: true``; their CAP says ``Exercise``; nothing reaches the station's
real readings or status. Meanwhile a real AWAS on the same station warns residents as usual, and
ending the exercise closes its alerts. ``ews simulate --exercise ID`` feeds the second drill.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from alerts import gsm7
from service.bench.process import ROOT, ServiceProcess
from tests.support.service_process import ProcessApi
from tests.support.infra import wait_until
from tests.support.mqtt import Publisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


Api = ProcessApi


def test_a_drill_over_mqtt_beside_a_real_flood(tmp_path, sqlite_url, broker_url, topic_prefix):
    service = ServiceProcess(tmp_path / "service", database_url=sqlite_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur"})
    gateway = Publisher(broker_url)
    try:
        service.start()
        api = Api(service)
        people = {}
        for name, phone, areas, role in [
            ("wotu", "0812-1111-0001", [{"kecamatan": "Wotu", "desa": "Kalaena"}], "resident"),
            ("laskap", "0812-1111-0002", [{"kecamatan": "Malili", "desa": "Laskap"}], "resident"),
            ("staff", "0812-1111-0003", [{"kecamatan": "Malili"}], "staff"),
        ]:
            answer = api.call("POST", "/subscribers", json={"phone": phone, "areas": areas, "role": role})
            assert answer.status_code == 201, answer.text
            people[name] = answer.json()["id"]
        until = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
        wotu = api.call("POST", "/exercises", "operator", json={"stations": ["KLN-WOTU"], "until": until,
                                                               "note": "latihan Wotu, staf saja"})
        laskap = api.call("POST", "/exercises", "admin", json={"stations": ["PKR-LASKAP"], "until": until,
                                                              "residents": True, "note": "latihan Laskap dengan warga"})
        assert wotu.status_code == laskap.status_code == 201, (wotu.text, laskap.text)
        wotu_id, laskap_id = wotu.json()["id"], laskap.json()["id"]

        # The drill at KLN-WOTU, and a real flood at the same station meanwhile.
        gateway.publish(f"{topic_prefix}/exercise/stations/KLN-WOTU/readings",
                        {"ts": _now(), "values": {"water_level": 4.5}})
        gateway.publish(f"{topic_prefix}/stations/KLN-WOTU/readings", {"ts": _now(), "values": {"water_level": 4.6}})
        gateway.wait_all()
        # The drill at PKR-LASKAP, fed by the simulator on the exercise topics: at 1,200x (20 h in a minute),
        # so its warnings go out before the next level supersedes them (spec 10) and its all-clear follows.
        simulated = subprocess.run(
            [sys.executable, "-m", "service.cli", "simulate", "--scenario", "pongkeru-2024", "--speed", "1200",
             "--stations", "PKR-LASKAP", "--exercise", str(laskap_id), "--mqtt-url", broker_url,
             "--prefix", topic_prefix, "--client-id-prefix", f"drill-{uuid.uuid4().hex[:6]}", "--quiet"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert simulated.returncode == 0, simulated.stderr

        def sent_to(person):
            return [n for n in api.items("/notifications?limit=1000")
                    if n["subscriber_id"] == people[person] and n["status"] == "sent"]

        def delivered():
            staff, wotu_r, laskap_r = sent_to("staff"), sent_to("wotu"), sent_to("laskap")
            staff_drill_wotu = [n for n in staff if n["body"].startswith("LATIHAN") and "Wotu" in n["body"]]
            laskap_clear = [n for n in laskap_r if n["kind"] == "all_clear"]
            return (staff, wotu_r, laskap_r) if staff_drill_wotu and wotu_r and laskap_clear else None

        staff, wotu_r, laskap_r = wait_until(delivered, 120, "the drill and real messages")
        alerts = api.items("/alerts?station_id=KLN-WOTU")
        drill_alert = next(a for a in alerts if a["exercise_id"] == wotu_id)
        real_alert = next(a for a in alerts if a["exercise_id"] is None)

        # The resident of Wotu got the real AWAS, and nothing of the staff-only drill.
        assert [n["alert_id"] for n in wotu_r] == [real_alert["id"]]
        assert wotu_r[0]["body"].startswith("BPBD LUTIM: AWAS banjir")
        # The Laskap drill reached its residents (residents: true), every message a LATIHAN one.
        assert laskap_r and all(n["body"].startswith("LATIHAN ") for n in laskap_r)
        for n in staff + laskap_r:
            assert gsm7.is_gsm7(n["body"]) and gsm7.septets(n["body"]) <= 160, n["body"]
        assert real_alert["exercise"] is False and drill_alert["exercise"] is True

        # Nothing of either drill in the stations' real readings or status.
        assert [r["value"] for r in api.items("/stations/KLN-WOTU/readings")] == [4.6]
        assert api.items("/stations/PKR-LASKAP/readings") == []
        laskap_status = api.call("GET", "/stations/PKR-LASKAP").json()["status"]
        assert laskap_status["latest"] == {} and laskap_status["level"] == "normal"
        assert len(api.items(f"/exercises/{laskap_id}/readings?limit=1000&metric=water_level")) > 100

        # CAP: Exercise at its URL, never in the public feed (which has the real one).
        # (CAP messages are issued by the scheduler's job, within a period of the alert.)
        cap = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
            requests.get(f"{service.base_url}/cap/alerts/{drill_alert['id']}.xml", timeout=30)), 90, "the drill's CAP")
        assert "<status>Exercise</status>" in cap.text
        feed = wait_until(lambda: (lambda text: text if f"/cap/alerts/{real_alert['id']}.xml" in text else None)(
            requests.get(f"{service.base_url}/cap/feed.atom", timeout=30).text), 90, "the real alert in the feed")
        assert f"/cap/alerts/{drill_alert['id']}.xml" not in feed

        # Ending the drill closes its alert, with its all-clear to staff; the real flood stays open.
        assert api.call("DELETE", f"/exercises/{wotu_id}", "operator").status_code == 200

        def closed():
            states = {a["id"]: a["state"] for a in api.items("/alerts?station_id=KLN-WOTU")}
            clear = [n for n in sent_to("staff") if n["alert_id"] == drill_alert["id"] and n["kind"] == "all_clear"]
            return states if states[drill_alert["id"]] == "closed" and clear else None

        states = wait_until(closed, 60, "the drill's alert to close with its all-clear")
        assert states[real_alert["id"]] == "active"
    finally:
        gateway.close()
        service.stop()
