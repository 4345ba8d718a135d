"""The event report of real floods: ``ews run`` with the real twilio library talking to the local
Twilio-compatible server, readings through MQTT.

- A live flood (current timestamps, one reading every 2 s, rising to AWAS and falling): the
  report's ``lead_time_s`` is the time from the first resident SMS reaching the provider to the
  measurement time of the first AWAS reading, and each event's ``warning_delay_s`` matches the
  provider's receipt times, within a second.
- A historic flood replayed (timestamps six hours old): the lead time is negative and the
  report says why (the readings were late on arrival), instead of a misleading number.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from service.bench.common import add_subscribers
from sinks.twilio import FakeTwilio
from tests.support.infra import MOSQUITTO, private_mosquitto, wait_until
from tests.support.mqtt import Publisher
from tests.support.service_process import ServiceProcess
from tests.support.services import make_services

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (apt-get install mosquitto)")]

LIVE = "PKR-LASKAP"  # warns Malili/Laskap; 1.8 / 2.4 / 3.0 m
REPLAY = "LAO-HARAPAN"  # warns Malili/Harapan; 1.2 / 1.6 / 2.0 m
STEP_S = 2.0
REPLAY_AGE = timedelta(hours=6)
FINAL = ("sent", "delivered", "undelivered", "failed", "superseded", "expired")


def flood_values(waspada: float, awas: float) -> list[float]:
    """Calm, a rise of 8 cm per sample to just above AWAS, a fall of 9 cm per sample, calm again."""
    values = [round(waspada - 0.3, 2)] * 2
    while values[-1] < awas + 0.1:
        values.append(round(values[-1] + 0.08, 2))
    values += [values[-1]] * 2
    while values[-1] > waspada - 0.5:
        values.append(round(values[-1] - 0.09, 2))
    return values + [values[-1]] * 4


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Flood:
    """The running service, the fake provider and an admin session of the API."""

    def __init__(self, service: ServiceProcess, fake: FakeTwilio, broker_url: str, prefix: str, residents: dict):
        self.service, self.fake, self.broker_url, self.prefix, self.residents = service, fake, broker_url, prefix, residents
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {service.token('admin')}"

    def api(self, path: str, **params):
        answer = self.http.get(self.service.base_url + "/api/v1" + path, params=params, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer

    def quick_rules(self, station: str) -> None:
        """No hold, a 4 s clear hold, no rise-rate rule: the level follows the readings at once."""
        url = f"{self.service.base_url}/api/v1/stations/{station}/rules"
        rules = self.http.get(url, timeout=30).json()
        rules["water_level"].update(hold_s=0, clear_hold_s=4, rise_rate=None)
        answer = self.http.put(url, json=rules, timeout=30)
        assert answer.status_code == 200, answer.text

    def publish(self, station: str, values: list[float], first_ts: datetime | None) -> list[datetime]:
        """One sample per value: live (``first_ts`` None: now, every 2 s) or replayed (from ``first_ts``, at once)."""
        publisher = Publisher(self.broker_url)
        stamps = []
        try:
            started = time.monotonic()
            for i, value in enumerate(values):
                if first_ts is None:
                    time.sleep(max(0.0, started + i * STEP_S - time.monotonic()))
                    now = datetime.now(timezone.utc)
                    ts = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as a gateway sends it: ms
                else:
                    ts = first_ts + timedelta(seconds=i * STEP_S)
                stamps.append(ts)
                publisher.publish(f"{self.prefix}/stations/{station}/readings",
                                  {"ts": iso(ts), "values": {"water_level": value}})
            publisher.wait_all()
        finally:
            publisher.close()
        return stamps

    def closed_alert(self, station: str) -> dict:
        items = wait_until(lambda: self.api("/alerts", station_id=station, state="closed").json()["items"], 120,
                           f"the {station} alert to close")
        alert = items[0]
        # The all-clear is expanded after the alert's earlier events (in event order): once it is
        # there and every SMS is settled, nothing of this alert is still to come.
        wait_until(lambda: self.settled(self.notifications(alert["id"])), 120,
                   "every SMS of the alert, the all-clear included, handed to the provider")
        return alert

    @staticmethod
    def settled(notes: list[dict]) -> bool:
        return any(n["kind"] == "all_clear" for n in notes) and all(n["status"] in FINAL for n in notes)

    def notifications(self, alert_id: int) -> list[dict]:
        return self.api("/notifications", alert_id=alert_id, limit=1000).json()["items"]

    def report(self, alert_id: int) -> dict:
        return self.api(f"/alerts/{alert_id}/report").json()

    def receipts(self) -> dict[int, datetime]:
        """Notification id -> when its create request reached the fake provider (first time)."""
        out = {}
        for request in self.fake.creates():
            query = urllib.parse.urlsplit(request.form.get("StatusCallback", "")).query
            notification_id = int(urllib.parse.parse_qs(query)["notification_id"][0])
            out.setdefault(notification_id, request.wall)
        return out


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report-flood")
    database_url = f"sqlite:///{directory / 'ews.db'}"
    services = make_services(database_url)
    residents = {LIVE: add_subscribers(services.engine, [{"kecamatan": "Malili", "desa": "Laskap"}], per_area=3),
                 REPLAY: add_subscribers(services.engine, [{"kecamatan": "Malili", "desa": "Harapan"}], per_area=2,
                                         first_phone=100)}
    services.engine.dispose()
    prefix = f"report/{uuid.uuid4().hex[:8]}"
    with private_mosquitto() as broker, FakeTwilio() as fake:
        fake.auto_callbacks = ["sent", "delivered"]
        service = ServiceProcess(directory / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 env=fake.env())
        service.env["EWS_PUBLIC_URL"] = service.base_url  # status callbacks come back to this service
        service.start()
        try:
            yield Flood(service, fake, broker.url, prefix, residents)
        finally:
            service.stop()


def test_a_live_flood_gives_the_lead_time_and_delays_the_provider_saw(flood):
    flood.quick_rules(LIVE)
    values = flood_values(1.8, 3.0)
    stamps = flood.publish(LIVE, values, None)
    alert = flood.closed_alert(LIVE)
    doc = flood.report(alert["id"])
    receipts = flood.receipts()
    notes = flood.notifications(alert["id"])
    phones = set(flood.residents[LIVE])
    first_resident = min(receipts[n["id"]] for n in notes if n["phone"] in phones and n["kind"] == "warning")
    first_awas = stamps[next(i for i, v in enumerate(values) if v >= 3.0)]
    expected = (first_awas - first_resident).total_seconds()
    assert doc["lead_time_s"] is not None and abs(doc["lead_time_s"] - expected) <= 1.0, (doc["lead_time"], expected)
    assert doc["lead_time"]["status"] == "before" and doc["lead_time"]["late_readings"] is False
    reached = datetime.fromisoformat(doc["lead_time"]["reached_at"].replace("Z", "+00:00"))
    assert abs((reached - first_awas).total_seconds()) < 0.01
    by_event: dict[int, list[datetime]] = {}
    for n in notes:
        by_event.setdefault(n["event_id"], []).append(receipts[n["id"]])
    checked = 0
    for event in doc["events"]:
        if event["id"] not in by_event:
            assert event["warning_delay_s"] == {"first": None, "last": None}
            continue
        reading_ts = datetime.fromisoformat(event["reading"]["ts"].replace("Z", "+00:00"))
        seen = sorted(by_event[event["id"]])
        assert abs(event["warning_delay_s"]["first"] - (seen[0] - reading_ts).total_seconds()) <= 1.0
        assert abs(event["warning_delay_s"]["last"] - (seen[-1] - reading_ts).total_seconds()) <= 1.0
        assert event["sms_total"] == len(seen) and event["sms"]["delivered"] + event["sms"]["sent"] == len(seen)
        checked += 1
    assert checked >= 4  # waspada, siaga, awas warnings and the all-clear
    assert [(e["type"], e["level"]) for e in doc["events"]][:3] == [
        ("raised", "waspada"), ("escalated", "siaga"), ("escalated", "awas")]


def test_a_replayed_historic_flood_gives_an_explained_lead_time(flood):
    flood.quick_rules(REPLAY)
    values = flood_values(1.2, 2.0)
    first_ts = datetime.now(timezone.utc).replace(microsecond=0) - REPLAY_AGE
    # A gateway's backlog arrives hours late, its first WASPADA sample before the rest (were the whole
    # flood replayed at once, its alert would close before any SMS left, and spec 10 rightly sends
    # nothing of a flood that is over).
    peak = next(i for i, v in enumerate(values) if v >= 1.2)
    flood.publish(REPLAY, values[:peak + 1], first_ts)
    wait_until(lambda: [n for n in flood.api("/notifications", limit=1000).json()["items"]
                        if n["kind"] == "warning" and n["status"] in ("sent", "delivered")
                        and n["phone"] in flood.residents[REPLAY]], 60, "a replayed warning handed over")
    flood.publish(REPLAY, values[peak + 1:], first_ts + timedelta(seconds=(peak + 1) * STEP_S))
    alert = flood.closed_alert(REPLAY)
    doc = flood.report(alert["id"])
    lead = doc["lead_time"]
    assert doc["lead_time_s"] < 0 and lead["status"] == "after"
    assert lead["late_readings"] is True and lead["reading_delay_s"] > REPLAY_AGE.total_seconds() - 600
    assert lead["head_start_s"] > 0  # the thresholds did give warning time: the data came too late to use it
    assert abs(doc["lead_time_s"] - (lead["head_start_s"] - lead["reading_delay_s"] - lead["dispatch_delay_s"])) <= 0.2
    page = flood.http.get(f"{flood.service.base_url}/api/v1/alerts/{alert['id']}/report.html", timeout=30)
    assert page.status_code == 200 and "Data pos tiba" in page.text and "sesudah diukur" in page.text
