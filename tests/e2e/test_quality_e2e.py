"""Data quality before judgment through a real broker and ``ews run`` (spec section 17, issue 13's done-when).

KLN-WOTU (AWAS at 4.2 m) reads 1.40-1.41 m every 10 minutes, then one 4.6 m, then 1.41 m: no
resident is told anything, the 4.6 m is stored as a spike, staff were told once when it came,
and no alert is left open. A real rise faster than the step warns residents one sample later;
a doubtful sample followed by silence is judged after 2 x expected_interval_s; a stuck sensor
raises a staff-only ``sensor`` alert that ends when the value moves.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
import sqlalchemy as sa

from alerts import gsm7
from service.bench.process import ServiceProcess
from service.db.schema import alert_events
from tests.support.infra import wait_until
from tests.support.mqtt import Publisher

pytestmark = [pytest.mark.broker, pytest.mark.slow]

STATION = "KLN-WOTU"


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class Run:
    """``ews run`` on a fresh database, a gateway publishing KLN-WOTU's levels, a resident of Kalaena and a staff member."""

    def __init__(self, service: ServiceProcess, gateway: Publisher, prefix: str, engine: sa.Engine) -> None:
        self.service, self.gateway, self.prefix, self.engine = service, gateway, prefix, engine
        self.base = f"{service.base_url}/api/v1"
        self.people = {}
        for name, phone, areas, role in [
            ("resident", "0812-2222-0001", [{"kecamatan": "Wotu", "desa": "Kalaena"}], "resident"),
            ("staff", "0812-2222-0002", [{"kecamatan": "Wotu"}], "staff"),
        ]:
            answer = self.call("POST", "/subscribers", json={"phone": phone, "areas": areas, "role": role})
            assert answer.status_code == 201, answer.text
            self.people[name] = answer.json()["id"]

    def call(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {self.service.token('admin')}"}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def items(self, path: str) -> list:
        answer = self.call("GET", path)
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    def publish(self, ts: datetime, value: float) -> None:
        self.gateway.publish(f"{self.prefix}/stations/{STATION}/readings",
                             {"ts": iso(ts), "values": {"water_level": value}})
        self.gateway.wait_all()

    def stored(self, count: int) -> list[dict]:
        return wait_until(lambda: (lambda r: r if len(r) >= count else None)(
            self.items(f"/stations/{STATION}/readings?metric=water_level&limit=200&order=asc")), 60,
            f"{count} stored readings")

    def settled(self) -> None:
        """Wait until every pending alert event has been expanded and every notification sent."""
        # superseded and expired are final too (spec 10); what reached whom is asserted by the tests
        wait_until(lambda: not self.events_to_expand() and all(n["status"] in ("sent", "superseded", "expired")
                                                              for n in self.items("/notifications?limit=1000")), 60,
                   "every event expanded and every notification sent or settled")

    def events_to_expand(self) -> int:
        """Alert events not yet turned into notifications. The dispatcher expands an event after the reading's
        transaction, so a stored reading's messages may not exist yet (the API does not show an event's dispatch)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).where(alert_events.c.dispatch == "pending")).scalar_one()

    def sent_to(self, person: str) -> list[dict]:
        mine = [n for n in self.items("/notifications?limit=1000") if n["subscriber_id"] == self.people[person]]
        return sorted(mine, key=lambda n: n["id"])

    def steady(self, start: datetime, count: int = 12) -> datetime:
        for i in range(count):
            self.publish(start + timedelta(minutes=10 * i), 1.40 + 0.01 * (i % 2))
        self.stored(count)
        return start + timedelta(minutes=10 * count)


@pytest.fixture
def run(tmp_path, sqlite_url, broker_url, topic_prefix):
    service = ServiceProcess(tmp_path / "service", database_url=sqlite_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur"})
    gateway = Publisher(broker_url)
    engine = sa.create_engine(sqlite_url)
    try:
        service.start()
        yield Run(service, gateway, topic_prefix, engine)
    finally:
        gateway.close()
        service.stop()
        engine.dispose()


def test_kln_wotu_one_wild_value_tells_no_resident(run):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    wild_at = run.steady(now - timedelta(minutes=140))
    run.publish(wild_at, 4.6)
    run.stored(13)
    staff = wait_until(lambda: run.sent_to("staff") or None, 60, "the staff check of the doubtful value")
    run.publish(wild_at + timedelta(minutes=10), 1.41)
    readings = run.stored(14)
    run.settled()
    assert [(r["value"], r["quality"]) for r in readings[-3:]] == [(1.41, "good"), (4.6, "spike"), (1.41, "good")]
    assert run.sent_to("resident") == []
    staff = run.sent_to("staff")
    assert len(staff) == 1 and staff[0]["kind"] == "operational"
    body = staff[0]["body"]
    assert body.startswith("BPBD LUTIM STAF: Data diragukan") and "4.6 m" in body and "AWAS" in body
    assert gsm7.is_gsm7(body) and gsm7.septets(body) <= 160
    assert run.items(f"/alerts?station_id={STATION}&state=active") == []
    assert [a["kind"] for a in run.items(f"/alerts?station_id={STATION}")] == ["sensor"]
    assert 'ews_readings_quality_total{quality="spike"} 1.0' in run.service.text("/metrics")


def test_a_real_rise_warns_residents_one_sample_later(run):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    at = run.steady(now - timedelta(minutes=170))
    rise = [2.6, 3.4, 4.5, 4.9]  # 1.4 -> 2.6 is beyond the 1 m step of 10 minutes; so is 3.4 -> 4.5
    seen = []
    for i, value in enumerate(rise):
        run.publish(at + timedelta(minutes=10 * i), value)
        run.stored(13 + i)
        run.settled()
        seen.append(([n["body"] for n in run.sent_to("resident")], [n["body"] for n in run.sent_to("staff")]))
    # 2.6 m: staff are told at once (it would raise WASPADA by the rise rate), residents not yet.
    assert seen[0][0] == [] and len(seen[0][1]) == 1 and "Data diragukan" in seen[0][1][0]
    # 3.4 m confirms it: residents get WASPADA, one sample later than without the check.
    assert len(seen[1][0]) == 1 and seen[1][0][0].startswith("BPBD LUTIM: WASPADA banjir")
    # 4.5 m is doubtful again (staff told), 4.9 m confirms it: AWAS, one sample later.
    assert len(seen[2][0]) == 1 and "Data diragukan" in seen[2][1][-1] and "4.5 m" in seen[2][1][-1]
    assert seen[3][0][-1].startswith("BPBD LUTIM: NAIK AWAS banjir") and "4.5 m" in seen[3][0][-1]
    assert [r["quality"] for r in run.items(f"/stations/{STATION}/readings?metric=water_level&limit=4")] == [
        "good"] * 4


def test_a_doubtful_value_followed_by_silence_is_judged_after_two_intervals(run):
    # A gateway sampling every 30 s, so that two intervals of silence pass within the test.
    answer = run.call("PATCH", f"/stations/{STATION}", json={"expected_interval_s": 30})
    assert answer.status_code == 200, answer.text
    time.sleep(6)  # the ingest's station cache (5 s)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    wild_at = now - timedelta(seconds=5)
    for i in range(20):
        run.publish(wild_at - timedelta(seconds=30 * (20 - i)), 1.40 + 0.01 * (i % 2))
    run.publish(wild_at, 4.6)
    run.stored(21)
    wait_until(lambda: run.sent_to("staff") or None, 60, "the staff check")
    assert run.sent_to("resident") == []
    due = wild_at + timedelta(seconds=60)
    warned = wait_until(lambda: run.sent_to("resident") or None, 150, "the late AWAS")
    assert datetime.now(timezone.utc) >= due
    assert warned[0]["body"].startswith("BPBD LUTIM: AWAS banjir") and "4.6 m" in warned[0]["body"]
    assert run.items(f"/stations/{STATION}/readings?metric=water_level&limit=1")[0]["quality"] == "doubtful"


def test_a_stuck_sensor_for_six_hours_tells_staff_only_until_it_moves(run):
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = now - timedelta(hours=7)
    for i in range(38):  # 6 h 10 min within a millimetre
        run.publish(start + timedelta(minutes=10 * i), 1.205 + 0.001 * (i % 2))
    run.stored(38)
    run.settled()
    (alert,) = run.items(f"/alerts?station_id={STATION}")
    assert alert["kind"] == "sensor" and alert["state"] == "active"
    staff = run.sent_to("staff")
    assert len(staff) == 1 and "mungkin macet" in staff[0]["body"]
    run.publish(start + timedelta(minutes=380), 1.26)
    run.stored(39)
    run.settled()
    assert run.items(f"/alerts?station_id={STATION}&state=active") == []
    assert run.sent_to("resident") == []
    assert "bergerak lagi" in run.sent_to("staff")[-1]["body"]
