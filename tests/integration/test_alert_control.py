"""An operator's control of an alert's life (spec section 10): acknowledgement, stale data, close by hand.

Driven through the real ingest path, the rule jobs, the dispatcher's expansion and the API,
on SQLite and PostgreSQL, with the service's clock moved by the test.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from lxml import etree

from service import alerting, cap, subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import ConsoleProvider
from service.ingest import Message
from tests.support.api import make_harness

STATION = "PKR-LASKAP"  # seed: waspada 1.8, siaga 2.4, awas 3.0; stale_after_s 1800, repeat_awas_s 3600
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=6)
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url, clock=Clock(T0))  # the composition root is frozen: the clock goes in
    now = T0
    with harness.services.engine.begin() as conn:
        subscribers.create(conn, {"phone": "0812-1111-0001", "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]}, now)
        subscribers.create(conn, {"phone": "0812-1111-0002", "areas": [{"kecamatan": "Malili", "desa": "Harapan"}]}, now)
        subscribers.create(conn, {"phone": "0812-1111-0009", "role": "staff", "areas": [{"kecamatan": "Malili"}]}, now)
    yield harness
    harness.services.engine.dispose()


def at(api, seconds: float) -> datetime:
    """Move the clock to T0 + ``seconds``; return that time."""
    api.services.clock.now = T0 + timedelta(seconds=seconds)
    return api.services.clock.now


def read(api, seconds: float, value: float, station: str = STATION) -> None:
    """The gauge reads ``value`` at T0 + ``seconds`` (received at once)."""
    now = at(api, seconds)
    message = Message(topic=f"ews/v1/stations/{station}/readings", received_at=now,
                      payload=json.dumps({"ts": now.isoformat().replace("+00:00", "Z"),
                                          "values": {"water_level": value}}).encode())
    assert not api.services.ingestor.ingest([message])[0].rejected


def told(api, event_type: str, kind: str | None = None) -> list[tuple[str, str]]:
    """Expand what is pending; (role, body) of the notifications of the newest ``event_type`` event."""
    sms_dispatcher(api.services, ConsoleProvider(stream=open("/dev/null", "w"))).expand()
    n, e, s = schema.notifications, schema.alert_events, schema.subscribers
    with api.services.engine.connect() as conn:
        query = sa.select(sa.func.max(e.c.id)).select_from(e.join(schema.alerts, schema.alerts.c.id == e.c.alert_id)) \
            .where(e.c.type == event_type)
        if kind:
            query = query.where(schema.alerts.c.kind == kind)
        newest = conn.execute(query).scalar()
        rows = conn.execute(sa.select(s.c.role, n.c.body).join(s, s.c.id == n.c.subscriber_id)
                            .where(n.c.event_id == newest).order_by(s.c.role)).all()
    return [(r.role, r.body) for r in rows]


def water_alerts(api, station: str = STATION):
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(schema.alerts).where(schema.alerts.c.station_id == station,
                                                           schema.alerts.c.kind == "water_level")
                            .order_by(schema.alerts.c.id)).all()


def test_an_acknowledgement_stops_the_staff_reminders_and_stale_data_stops_every_reminder(api):
    read(api, 0, 3.3)
    (alert,) = water_alerts(api)
    read(api, 3500, 3.4)
    assert alerting.remind_awas(api.services.engine, at(api, 3600)) == 1
    assert [role for role, _ in told(api, "reminded")] == ["resident", "staff"]

    assert api.call("POST", f"/api/v1/alerts/{alert.id}/ack", role="operator", json={"note": "tim di lokasi"}).status_code == 200
    read(api, 7100, 3.5)
    assert alerting.remind_awas(api.services.engine, at(api, 7200)) == 1
    ((role, body),) = told(api, "reminded")
    assert role == "resident" and "MASIH AWAS" in body and "3.5 m" in body

    # The gauge falls silent at AWAS: its newest value gets older than stale_after_s (1800 s).
    assert alerting.remind_awas(api.services.engine, at(api, 7100 + 1800 + 3600)) == 0
    assert alerting.check_offline(api.services.engine, api.services.clock()) == 1
    ((role, body),) = told(api, "raised", kind="offline")
    assert role == "staff" and "OFFLINE" in body and "Terakhir AWAS" in body
    assert water_alerts(api)[0].state == "active"  # still open: nobody said the river went down


def test_an_operator_closes_a_stuck_alert_without_an_all_clear_and_the_next_high_reading_opens_a_new_one(api):
    read(api, 0, 3.3)
    (alert,) = water_alerts(api)
    told(api, "raised")
    assert cap.issue_due(api.services.engine, cap.cap_profile(api.services.settings), at(api, 60)).issued
    path = f"/api/v1/alerts/{alert.id}/close"
    assert api.call("POST", path, role="viewer", json={"reason": "x"}).status_code == 403
    missing = api.call("POST", path, role="operator", json={})
    assert missing.status_code == 422 and "reason" in missing.get_data(as_text=True)

    closed = api.call("POST", path, role="operator", json={"reason": "sensor macet, dicek tim"})
    assert closed.status_code == 200, closed.get_data(as_text=True)
    doc = closed.get_json()
    assert (doc["state"], doc["level"]) == ("closed", "normal")
    event = doc["events"][-1]
    assert (event["type"], event["note"]) == ("closed", "sensor macet, dicek tim") and event["by"].startswith("test operator")
    assert told(api, "closed") == []  # no all-clear unless asked
    with api.services.engine.connect() as conn:  # the wave it sent downstream ended the same way (spec 11)
        (wave,) = conn.execute(sa.select(schema.alerts).where(schema.alerts.c.kind == "upstream")).all()
        last = conn.execute(sa.select(schema.alert_events).where(schema.alert_events.c.alert_id == wave.id)
                            .order_by(schema.alert_events.c.id.desc())).first()
    assert (wave.station_id, wave.state, last.type, last.note) == ("MLL-MALILI", "closed", "closed", "sensor macet, dicek tim")
    assert api.call("POST", path, role="operator", json={"reason": "lagi"}).status_code == 409
    with api.services.engine.connect() as conn:
        (entry,) = conn.execute(sa.select(schema.audit_log).where(schema.audit_log.c.action == "close")).all()
    assert entry.entity_id == str(alert.id) and entry.after["reason"] == "sensor macet, dicek tim"

    cap.issue_due(api.services.engine, cap.cap_profile(api.services.settings), at(api, 120))
    served = etree.fromstring(api.client.get(f"/cap/alerts/{alert.id}.xml").data)
    assert served.findtext("cap:msgType", namespaces=CAP) == "Cancel"

    read(api, 600, 3.3)  # the river is still high: judged afresh
    first, second = water_alerts(api)
    assert second.state == "active" and second.level == "awas" and second.id != first.id
    assert [role for role, _ in told(api, "raised", kind="water_level")] == ["resident", "staff"]


def test_closing_with_all_clear_tells_those_warned_and_the_station_can_then_be_deleted(api):
    station = "LAO-HARAPAN"  # no station upstream of it: deletable once its alert is closed
    read(api, 0, 2.6, station)
    (alert,) = water_alerts(api, station)
    told(api, "raised")
    with api.services.engine.begin() as conn:  # the siaga warning went out
        conn.execute(sa.update(schema.notifications).values(status="sent"))
    busy = api.call("DELETE", f"/api/v1/stations/{station}", role="admin")
    assert busy.status_code == 409 and "active alert" in busy.get_data(as_text=True)
    closed = api.call("POST", f"/api/v1/alerts/{alert.id}/close", role="operator",
                      json={"reason": "banjir surut, dicek di lokasi", "all_clear": True})
    assert closed.status_code == 200
    assert [(role, "NORMAL" in body) for role, body in told(api, "closed")] == [("resident", True), ("staff", True)]
    assert api.call("DELETE", f"/api/v1/stations/{station}", role="admin").status_code == 204
