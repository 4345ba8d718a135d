"""Banjir kiriman end to end over MQTT and HTTP through ``ews run`` (spec section 11, issue 16's done-when).

The seed's Kalaena runs KLN-MANGKUTANA -> 1.5 h -> KLN-KALAENA -> 1.5 h -> KLN-WOTU. A rise at
Mangkutana to SIAGA opens ``upstream`` alerts at Kalaena and Wotu with ETAs of +1.5 h and +3 h
from the measurement time; their residents get one message each naming Mangkutana and the ETA
in WITA, in one segment; AWAS upstream escalates them; Mangkutana back to normal closes them
(all-clears). Then a second wave: Wotu's own AWAS silences its upstream alert's messages, and
Kalaena's own rise makes a second source of Wotu's one upstream alert; an operator closing the
sources' alerts by hand (POST /alerts/{id}/close) closes the upstream alerts they caused.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests

from alerts import gsm7
from service.bench.process import ServiceProcess
from tests.support.service_process import ProcessApi
from tests.support.infra import wait_until
from tests.support.mqtt import Publisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]

WITA = ZoneInfo("Asia/Makassar")
T0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=3)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def wita(dt: datetime) -> str:
    return dt.astimezone(WITA).strftime("%H:%M")


class Api(ProcessApi):
    def upstream(self, station: str) -> list:
        return [a for a in self.items(f"/alerts?station_id={station}&limit=100") if a["kind"] == "upstream"]


def test_a_wave_from_mangkutana_warns_kalaena_and_wotu_with_their_etas(tmp_path, sqlite_url, broker_url, topic_prefix):
    service = ServiceProcess(tmp_path / "service", database_url=sqlite_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur"})
    gateway = Publisher(broker_url)

    def reading(station: str, minute: int, level: float) -> None:
        gateway.publish(f"{topic_prefix}/stations/{station}/readings",
                        {"ts": iso(T0 + timedelta(minutes=minute)), "values": {"water_level": level}})
        gateway.wait_all()

    try:
        service.start()
        api = Api(service)
        # Mangkutana steps faster than quality.max_step_per_min (spec 17); the waves, not spikes, are under test.
        answer = api.call("PATCH", "/stations/KLN-MANGKUTANA/rules", json={"quality": {"max_step_per_min": None}})
        assert answer.status_code == 200, answer.text
        people = {}
        for name, phone, areas, language in [
            ("kalaena", "0812-2222-0001", [{"kecamatan": "Kalaena", "desa": "Pertasi Kencana"}], "id"),
            ("wotu", "0812-2222-0002", [{"kecamatan": "Wotu", "desa": "Bawalipu"}], "en"),
        ]:
            answer = api.call("POST", "/subscribers", json={"phone": phone, "areas": areas, "language": language})
            assert answer.status_code == 201, answer.text
            people[name] = answer.json()["id"]

        def sent_to(person: str, kind: str | None = None) -> list:
            return [n for n in api.items("/notifications?limit=1000")
                    if n["subscriber_id"] == people[person] and n["status"] == "sent" and n["alert_id"] in
                    {a["id"] for a in api.upstream("KLN-KALAENA") + api.upstream("KLN-WOTU")}
                    and (kind is None or n["kind"] == kind)]

        # SIAGA at Mangkutana, measured at T0 + 10 min.
        reading("KLN-MANGKUTANA", 0, 2.0)
        reading("KLN-MANGKUTANA", 10, 3.1)
        measured = T0 + timedelta(minutes=10)
        wait_until(lambda: sent_to("kalaena") and sent_to("wotu"), 60, "the upstream warnings")
        (kalaena,), (wotu,) = api.upstream("KLN-KALAENA"), api.upstream("KLN-WOTU")
        assert kalaena["eta"] == iso(measured + timedelta(hours=1.5)) and wotu["eta"] == iso(measured + timedelta(hours=3))
        assert kalaena["source_station_id"] == wotu["source_station_id"] == "KLN-MANGKUTANA"
        assert kalaena["level"] == wotu["level"] == "siaga"
        detail = api.call("GET", f"/alerts/{wotu['id']}").json()
        assert detail["eta"] == wotu["eta"] and detail["source_station_id"] == "KLN-MANGKUTANA"
        (to_kalaena,), (to_wotu,) = sent_to("kalaena"), sent_to("wotu")  # one message each
        assert to_kalaena["body"].startswith("BPBD LUTIM: BANJIR KIRIMAN dari Mangkutana (SIAGA")
        assert f"tiba di Kalaena {wita(measured + timedelta(hours=1.5))} WITA" in to_kalaena["body"]
        assert "FLOOD WAVE from Mangkutana" in to_wotu["body"]
        assert f"Wotu {wita(measured + timedelta(hours=3))} WITA" in to_wotu["body"]
        for n in (to_kalaena, to_wotu):
            assert gsm7.is_gsm7(n["body"]) and gsm7.septets(n["body"]) <= 160, n["body"]

        # CAP: a flood wave from upstream whose onset is the ETA (in WITA).
        onset = (measured + timedelta(hours=3)).astimezone(WITA).isoformat()
        cap = wait_until(lambda: (lambda r: r.text if r.status_code == 200 else None)(
            requests.get(f"{service.base_url}/cap/alerts/{wotu['id']}.xml", timeout=30)), 60, "Wotu's CAP message")
        assert "<event>Banjir kiriman</event>" in cap and "<event>Flood wave from upstream</event>" in cap
        assert f"<onset>{onset}</onset>" in cap

        # AWAS at Mangkutana: both escalate, with the ETA of the new measurement.
        reading("KLN-MANGKUTANA", 20, 3.9)
        wait_until(lambda: len(sent_to("kalaena")) == 2 and len(sent_to("wotu")) == 2, 60, "the escalations")
        (wotu,) = api.upstream("KLN-WOTU")
        assert wotu["level"] == "awas" and wotu["eta"] == iso(T0 + timedelta(minutes=20, hours=3))
        assert any("FLOOD WAVE RISING from Mangkutana (AWAS" in n["body"] for n in sent_to("wotu"))

        # Mangkutana back to normal (for its clear_hold_s): the source closes, so do they, with all-clears.
        for minute in (30, 40, 50):
            reading("KLN-MANGKUTANA", minute, 1.0)
        wait_until(lambda: sent_to("kalaena", "all_clear") and sent_to("wotu", "all_clear"), 60, "the all-clears")
        assert {a["state"] for a in api.upstream("KLN-KALAENA") + api.upstream("KLN-WOTU")} == {"closed"}

        # A second wave: Wotu's own AWAS first, then Mangkutana SIAGA, then Kalaena's own SIAGA.
        reading("KLN-WOTU", 60, 4.3)
        reading("KLN-MANGKUTANA", 70, 3.1)
        wait_until(lambda: len(sent_to("kalaena")) == 4, 60, "the second wave's warning at Kalaena")
        reading("KLN-KALAENA", 80, 3.3)
        active = wait_until(lambda: (lambda a: a if a and a[0]["source_station_id"] == "KLN-KALAENA" else None)(
            [a for a in api.upstream("KLN-WOTU") if a["state"] == "active"]), 60, "Kalaena as Wotu's nearer source")
        # One upstream alert at Wotu for both sources: the same level, the earlier arrival (Kalaena's).
        assert len(active) == 1 and active[0]["level"] == "siaga"
        assert active[0]["eta"] == iso(T0 + timedelta(minutes=80, hours=1.5))
        # Wotu's own AWAS silences it: its events are recorded, its residents told nothing of it.
        events = api.call("GET", f"/alerts/{active[0]['id']}").json()["events"]
        assert [e["type"] for e in events] == ["raised"]
        assert [n for n in sent_to("wotu") if n["alert_id"] == active[0]["id"]] == []

        # An operator closes Mangkutana's alert by hand: Kalaena's wave (its only source) closes the same
        # way; Wotu's stays, held by Kalaena. Closing Kalaena's own alert then closes Wotu's.
        def close(station: str) -> None:
            (own,) = [a for a in api.items(f"/alerts?station_id={station}&state=active") if a["kind"] == "water_level"]
            answer = api.call("POST", f"/alerts/{own['id']}/close", "operator", json={"reason": "cek lapangan"})
            assert answer.status_code == 200, answer.text

        close("KLN-MANGKUTANA")
        states = {a["station_id"]: a for a in api.upstream("KLN-KALAENA") + api.upstream("KLN-WOTU")
                  if a["id"] != kalaena["id"] and a["id"] != wotu["id"]}
        assert states["KLN-KALAENA"]["state"] == "closed" and states["KLN-WOTU"]["state"] == "active"
        events = api.call("GET", f"/alerts/{states['KLN-KALAENA']['id']}").json()["events"]
        assert events[-1]["type"] == "closed"
        close("KLN-KALAENA")
        assert api.call("GET", f"/alerts/{active[0]['id']}").json()["state"] == "closed"
    finally:
        gateway.close()
        service.stop()
