"""Exercises through the API (spec section 10) on a real database: who may start one, its own readings,
state and alerts, its messages, its end, and a real flood beside it."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import cap, exercises, subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import ConsoleProvider
from service.ingest import Message
from tests.support.api import make_harness

NOW = datetime.now(timezone.utc).replace(microsecond=0)
WOTU = "KLN-WOTU"  # seed: awas 4.2 m; areas Wotu/Kalaena, Bawalipu, Balo-Balo
n = schema.notifications


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


def start(api, role="operator", **body):
    body = {"stations": [WOTU], "until": iso(NOW + timedelta(hours=3)), "note": "latihan banjir Wotu", **body}
    return api.call("POST", "/api/v1/exercises", role, json=body)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def reading(station: str, value: float, minute: float = 0, drill: bool = True) -> Message:
    """A sample measured at NOW + ``minute``, arriving now (after the exercise of the test started)."""
    ts = NOW + timedelta(minutes=minute)
    topic = f"ews/v1/exercise/stations/{station}/readings" if drill else f"ews/v1/stations/{station}/readings"
    return Message(topic=topic, payload=json.dumps({"ts": iso(ts), "values": {"water_level": value}}).encode(),
                   received_at=datetime.now(timezone.utc) + timedelta(minutes=minute))


def people(api) -> tuple[int, int]:
    with api.services.engine.begin() as conn:
        resident = subscribers.create(conn, {"phone": "0812-1111-0001",
                                             "areas": [{"kecamatan": "Wotu", "desa": "Kalaena"}]}, NOW).id
        staff = subscribers.create(conn, {"phone": "0812-1111-0002", "areas": [{"kecamatan": "Malili"}],
                                          "role": "staff"}, NOW).id
    return resident, staff


def dispatch(api) -> list:
    dispatcher = sms_dispatcher(api.services, ConsoleProvider(stream=open(os.devnull, "w")))
    try:
        assert dispatcher.run_until_idle() == {}
    finally:
        dispatcher.stop()
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(n).order_by(n.c.id)).fetchall()


def count(api, table) -> int:
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_who_may_start_an_exercise_and_what_it_answers(api):
    assert start(api, "viewer").status_code == 403
    assert start(api, "operator", residents=True).status_code == 403  # residents: admin only
    created = start(api, "operator")
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert set(body) >= {"id", "stations", "residents", "note", "started_at", "until", "ended_at", "by"}
    assert (body["stations"], body["residents"], body["ended_at"]) == ([WOTU], False, None)
    assert body["by"].startswith("test operator#")
    with api.services.engine.connect() as conn:
        entry = conn.execute(sa.select(schema.audit_log).order_by(schema.audit_log.c.id.desc())).first()
    assert (entry.action, entry.entity, entry.entity_id) == ("create", "exercise", str(body["id"]))
    # One station is in one drill at a time.
    busy = start(api, "admin", residents=True)
    assert busy.status_code == 409 and busy.content_type == "application/problem+json"
    listed = api.call("GET", "/api/v1/exercises?state=active", "viewer").get_json()["items"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert api.call("GET", "/api/v1/exercises?state=ended", "viewer").get_json()["items"] == []


@pytest.mark.parametrize("change, field", [
    ({"until": iso(NOW + timedelta(hours=25))}, "until"),
    ({"until": iso(NOW - timedelta(minutes=1))}, "until"),
    ({"until": "2026-12-01T10:00:00"}, "until"),
    ({"stations": []}, "stations"),
    ({"stations": ["NOPE"]}, "stations.0"),
    ({"stations": ["bad id!"]}, "stations.0"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_exercise_is_a_422_naming_the_field(api, change, field):
    response = start(api, **change)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_drill_readings_stay_apart_and_a_real_flood_warns_as_always(api):
    resident, staff = people(api)
    exercise_id = start(api).get_json()["id"]
    results = api.services.ingestor.ingest([reading(WOTU, 4.5), reading(WOTU, 4.6, drill=False)])
    assert [[(e["type"], e["level"]) for e in r.events] for r in results] == [[("raised", "awas")]] * 2
    alerts = api.call("GET", f"/api/v1/alerts?station_id={WOTU}", "viewer").get_json()["items"]
    by_scope = {a["exercise_id"]: a for a in alerts}
    assert set(by_scope) == {None, exercise_id}  # both open at once
    assert by_scope[exercise_id]["exercise"] is True and by_scope[None]["exercise"] is False
    # The real readings and status know only the real reading.
    real = api.call("GET", f"/api/v1/stations/{WOTU}/readings", "viewer").get_json()["items"]
    assert [r["value"] for r in real] == [4.6]
    assert api.call("GET", f"/api/v1/stations/{WOTU}", "viewer").get_json()["status"]["latest"]["water_level"]["value"] == 4.6
    drill = api.call("GET", f"/api/v1/exercises/{exercise_id}/readings", "viewer").get_json()["items"]
    assert [(r["station_id"], r["value"]) for r in drill] == [(WOTU, 4.5)]
    detail = api.call("GET", f"/api/v1/exercises/{exercise_id}", "viewer").get_json()
    assert detail["status"][WOTU]["level"] == "awas"

    sent = dispatch(api)
    real_alert, drill_alert = by_scope[None]["id"], by_scope[exercise_id]["id"]
    assert {(r.subscriber_id, r.alert_id) for r in sent} == {(resident, real_alert), (staff, real_alert),
                                                             (staff, drill_alert)}
    latihan = next(r for r in sent if r.alert_id == drill_alert)
    assert latihan.body.startswith("LATIHAN BPBD LUTIM: AWAS banjir") and len(latihan.body) <= 160

    # Ending the drill closes its alert with its all-clear (to staff) and leaves the real one alone.
    ended = api.call("DELETE", f"/api/v1/exercises/{exercise_id}", "operator")
    assert ended.status_code == 200 and ended.get_json()["ended_at"] is not None
    assert api.call("DELETE", f"/api/v1/exercises/{exercise_id}", "operator").status_code == 409
    states = {a["exercise_id"]: a["state"] for a in
              api.call("GET", f"/api/v1/alerts?station_id={WOTU}", "viewer").get_json()["items"]}
    assert states == {None: "active", exercise_id: "closed"}
    events = api.call("GET", f"/api/v1/alerts/{drill_alert}", "viewer").get_json()["events"]
    assert [e["type"] for e in events] == ["raised", "cleared"]
    clear = [r for r in dispatch(api) if r.alert_id == drill_alert and r.kind == "all_clear"]
    assert [(r.subscriber_id, r.body.startswith("LATIHAN")) for r in clear] == [(staff, True)]


def test_residents_get_the_latihan_messages_only_when_the_admin_asked(api):
    resident, staff = people(api)
    exercise_id = start(api, "admin", residents=True).get_json()["id"]
    api.services.ingestor.ingest([reading(WOTU, 4.5)])
    sent = dispatch(api)
    assert {r.subscriber_id for r in sent} == {resident, staff}
    assert all(r.body.startswith("LATIHAN ") for r in sent)
    with api.services.engine.connect() as conn:
        alert = conn.execute(sa.select(schema.alerts)).one()
    assert alert.exercise_id == exercise_id


def test_drill_readings_without_a_running_exercise_are_dead_letters(api):
    (result,) = api.services.ingestor.ingest([reading(WOTU, 4.5)])
    assert [r.reason for r in result.rejected] == ["no_active_exercise"]
    exercise_id = start(api, stations=["PKR-LASKAP"]).get_json()["id"]
    (other,) = api.services.ingestor.ingest([reading(WOTU, 4.5, minute=1)])  # a station not in the drill
    assert [r.reason for r in other.rejected] == ["no_active_exercise"]
    api.call("DELETE", f"/api/v1/exercises/{exercise_id}", "operator")
    (late,) = api.services.ingestor.ingest([reading("PKR-LASKAP", 3.5, minute=2)])
    assert [r.reason for r in late.rejected] == ["no_active_exercise"]
    with api.services.engine.connect() as conn:
        letters = conn.execute(sa.select(schema.dead_letters.c.reason, schema.dead_letters.c.topic)).all()
    assert [r.reason for r in letters] == ["no_active_exercise"] * 3
    assert count(api, schema.exercise_readings) == 0 and count(api, schema.readings) == 0
    assert count(api, schema.alerts) == 0


def test_drill_readings_follow_the_payload_rules(api):
    start(api)
    first = api.services.ingestor.ingest([reading(WOTU, 4.5)])[0]
    again = api.services.ingestor.ingest([reading(WOTU, 4.5), reading(WOTU, 4.9)])
    assert first.accepted and again[0].duplicates == 1
    assert [r.reason for r in again[1].rejected] == ["conflicting_duplicate"]
    rain = Message(topic=f"ews/v1/exercise/stations/{WOTU}/readings",
                   payload=json.dumps({"ts": iso(NOW), "values": {"rainfall": 5}}).encode(),
                   received_at=datetime.now(timezone.utc))
    assert [r.reason for r in api.services.ingestor.ingest([rain])[0].rejected] == ["metric_not_configured"]


def test_an_exercise_ends_by_itself_at_until(api):
    people(api)
    until = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=30)
    exercise_id = start(api, until=iso(until)).get_json()["id"]
    api.services.ingestor.ingest([reading(WOTU, 4.5)])
    assert exercises.end_due(api.services.engine, until - timedelta(minutes=1)) == 0
    assert exercises.end_due(api.services.engine, until) == 1
    assert exercises.end_due(api.services.engine, until + timedelta(minutes=1)) == 0
    ended = api.call("GET", f"/api/v1/exercises/{exercise_id}", "viewer").get_json()
    assert ended["ended_by"] == exercises.ENDED_BY_UNTIL and ended["ended_at"] is not None
    assert api.call("GET", "/api/v1/alerts?state=active", "viewer").get_json()["items"] == []


def test_a_drills_cap_says_exercise_and_stays_out_of_the_public_feed(api):
    exercise_id = start(api).get_json()["id"]
    api.services.ingestor.ingest([reading(WOTU, 4.5)])
    (alert,) = api.call("GET", f"/api/v1/alerts?exercise_id={exercise_id}", "viewer").get_json()["items"]
    cap.issue_due(api.services.engine, cap.cap_profile(api.services.settings), datetime.now(timezone.utc))
    xml = api.call("GET", f"/cap/alerts/{alert['id']}.xml", None)
    assert xml.status_code == 200 and "<status>Exercise</status>" in xml.get_data(as_text=True)
    feed = api.call("GET", "/cap/feed.atom", None).get_data(as_text=True)
    assert f"/cap/alerts/{alert['id']}.xml" not in feed
    public = api.call("GET", "/dashboard/public.json", None).get_json()
    assert public["alerts"] == [] and [e["id"] for e in public["exercises"]] == [exercise_id]
