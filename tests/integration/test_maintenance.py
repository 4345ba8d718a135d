"""Maintenance windows (spec section 10): readings kept and judged, nothing to residents, staff warned, the end announced."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from service import alerting, maintenance, subscribers
from service.bootstrap import sms_dispatcher
from service.dispatch import ConsoleProvider
from service.db import schema
from service.ingest import Message
from tests.support.services import without_spike_check
from tests.integration.test_alert_control import STATION, T0, api, at, read, told, water_alerts  # noqa: F401


def iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def open_window(api, hours: float = 4, **body):
    return api.call("POST", "/api/v1/maintenance", role="operator", json={
        "station_id": STATION, "from": iso(api.services.clock()),
        "until": iso(api.services.clock() + timedelta(hours=hours)), "reason": "kalibrasi sensor", **body})


def events(api, alert_id):
    with api.services.engine.connect() as conn:
        return [(e.type, e.level) for e in conn.execute(sa.select(schema.alert_events).where(
            schema.alert_events.c.alert_id == alert_id).order_by(schema.alert_events.c.id))]


def test_a_window_is_validated_listed_shown_in_the_station_status_and_audited(api):
    too_long = open_window(api, hours=7 * 24 + 1)
    assert too_long.status_code == 422 and "until" in too_long.get_data(as_text=True)
    unknown = open_window(api, station_id="NO-SUCH")
    assert unknown.status_code == 422 and "station_id" in unknown.get_data(as_text=True)
    assert api.call("POST", "/api/v1/maintenance", role="viewer", json={}).status_code == 403
    created = open_window(api)
    assert created.status_code == 201, created.get_data(as_text=True)
    window = created.get_json()
    assert (window["station_id"], window["reason"], window["state"]) == (STATION, "kalibrasi sensor", "active")
    status = api.call("GET", f"/api/v1/stations/{STATION}", role="viewer").get_json()["status"]
    assert status["maintenance"] == {"until": window["until"], "reason": "kalibrasi sensor"}
    listed = api.call("GET", "/api/v1/stations", role="viewer").get_json()["items"]
    assert [s["id"] for s in listed if "maintenance" in s["status"]] == [STATION]
    assert [w["id"] for w in api.call("GET", "/api/v1/maintenance?state=active", role="viewer").get_json()["items"]] \
        == [window["id"]]
    at(api, 60)
    ended = api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator")
    assert ended.status_code == 200 and ended.get_json()["state"] == "ended"
    assert api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator").status_code == 409
    assert api.call("GET", "/api/v1/maintenance?state=ended", role="viewer").get_json()["items"][0]["id"] == window["id"]
    assert "maintenance" not in api.call("GET", f"/api/v1/stations/{STATION}", role="viewer").get_json()["status"]
    with api.services.engine.connect() as conn:
        actions = [r.action for r in conn.execute(sa.select(schema.audit_log).where(
            schema.audit_log.c.entity == "maintenance").order_by(schema.audit_log.c.id))]
    assert actions == ["create", "end"]


def test_during_a_window_residents_get_nothing_staff_get_siaga_and_awas_marked_and_no_offline_alert(api):
    without_spike_check(api.services.engine, STATION)  # its river jumps; the window is under test
    window = open_window(api).get_json()
    read(api, 60, 2.0)  # waspada: nobody is told, residents' message suppressed
    (alert,) = water_alerts(api)
    assert told(api, "raised") == []
    read(api, 120, 3.3)  # awas: staff only, marked
    ((role, body),) = told(api, "escalated")
    assert role == "staff" and body.startswith("PEMELIHARAAN POS: BPBD LUTIM") and "AWAS" in body
    assert [e for e in events(api, alert.id) if e[0] == "suppressed"] == [("suppressed", "waspada"), ("suppressed", "awas")]
    readings = api.call("GET", f"/api/v1/stations/{STATION}/readings?metric=water_level", role="viewer").get_json()
    assert [r["value"] for r in readings["items"]] == [3.3, 2.0]  # stored and shown as always

    assert alerting.check_offline(api.services.engine, at(api, 120 + 3600)) == 0  # silent, but under repair
    with api.services.engine.begin() as conn:  # nor when its gateway's will says offline (spec section 9)
        assert alerting.gateway_offline(conn, STATION, api.services.clock()) == 0
    assert maintenance.announce_ended(api.services.engine, api.services.clock()) == 0  # still in force

    at(api, 4 * 3600 + 60)  # the window ran out; the river is still at AWAS
    assert maintenance.announce_ended(api.services.engine, api.services.clock()) == 1
    assert maintenance.announce_ended(api.services.engine, api.services.clock()) == 0  # once
    told_now = told(api, "announced")
    assert [(role, "AWAS" in body and "PEMELIHARAAN" not in body) for role, body in told_now] == [
        ("resident", True), ("staff", True)]
    assert window["state"] == "active"


def gauge(api, seconds: float, **values) -> None:
    """The station reports ``values`` (water_level, battery ...) at T0 + ``seconds``."""
    now = at(api, seconds)
    message = Message(topic=f"ews/v1/stations/{STATION}/readings", received_at=now,
                      payload=json.dumps({"ts": iso(now), "values": values}).encode())
    assert not api.services.ingestor.ingest([message])[0].rejected


def test_staff_hear_of_siaga_and_reminders_marked_no_battery_alert_and_ending_by_hand_announces_the_level_now(api):
    without_spike_check(api.services.engine, STATION)
    window = open_window(api).get_json()
    gauge(api, 60, water_level=2.6)  # siaga
    (alert,) = water_alerts(api)
    ((role, body),) = told(api, "raised", kind="water_level")
    assert role == "staff" and body.startswith("PEMELIHARAAN POS: BPBD LUTIM: SIAGA")
    gauge(api, 120, water_level=3.3)
    assert [role for role, _ in told(api, "escalated", kind="water_level")] == ["staff"]
    gauge(api, 3600, water_level=3.4, battery=10.9)  # and the battery is low: the repair crew's business
    assert alerting.remind_awas(api.services.engine, at(api, 3720)) == 1
    ((role, body),) = told(api, "reminded")
    assert role == "staff" and body.startswith("PEMELIHARAAN POS: BPBD LUTIM: MASIH AWAS") and "3.4 m" in body
    with api.services.engine.connect() as conn:  # no battery alert at all (spec section 10), as no offline one
        assert conn.execute(sa.select(schema.alerts).where(schema.alerts.c.kind == "battery")).all() == []
    assert [e for e in events(api, alert.id) if e[0] == "suppressed"] == [
        ("suppressed", "siaga"), ("suppressed", "awas"), ("suppressed", "awas")]  # raised, escalated, reminded

    gauge(api, 4000, water_level=2.6)  # the river falls back to siaga ...
    gauge(api, 4700, water_level=2.6)
    assert water_alerts(api)[0].level == "siaga"
    at(api, 4800)  # ... and the crew ends the window early
    ended = api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator")
    assert ended.status_code == 200 and ended.get_json()["ended_by"].startswith("test operator")
    announced = told(api, "announced")
    assert [role for role, _ in announced] == ["resident", "staff"]  # Laskap's resident, not Harapan's
    for _, body in announced:  # at its level now, unmarked, from the newest reading and its time
        assert body.startswith("BPBD LUTIM: SIAGA") and "2.6 m" in body and "PEMELIHARAAN" not in body
        assert (T0 + timedelta(seconds=4700)).astimezone(api.services.settings.tz).strftime("%H:%M") in body
    assert maintenance.announce_ended(api.services.engine, at(api, 4900)) == 0  # the job does not announce it again
    with api.services.engine.connect() as conn:
        audit = [(r.action, r.after["state"]) for r in conn.execute(sa.select(schema.audit_log).where(
            schema.audit_log.c.entity == "maintenance").order_by(schema.audit_log.c.id))]
    assert audit == [("create", "active"), ("end", "ended")]


def test_residents_warned_before_a_window_get_the_all_clear_it_held_back_when_it_ends_once(api):
    without_spike_check(api.services.engine, STATION)
    sender = sms_dispatcher(api.services, ConsoleProvider(stream=open("/dev/null", "w")))
    read(api, 60, 3.3)  # AWAS before any window: Laskap's resident and staff are warned
    assert sender.run_until_idle() == {}
    with api.services.engine.begin() as conn:  # registered later: never warned of this alert
        subscribers.create(conn, {"phone": "0812-1111-0003", "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]},
                           api.services.clock())
    window = open_window(api).get_json()
    read(api, 600, 1.0)  # the river falls during the window (clear_hold_s 600): the alert closes,
    read(api, 1300, 1.0)  # its all-clear held back
    (alert,) = [a for a in water_alerts(api) if a.state == "closed"]
    assert told(api, "cleared", kind="water_level") == [] and ("suppressed", "normal") in events(api, alert.id)
    at(api, 1400)
    assert api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator").status_code == 200
    assert sender.run_until_idle() == {}
    n, s = schema.notifications, schema.subscribers
    with api.services.engine.connect() as conn:
        got = {(r.phone, r.role, r.status) for r in conn.execute(
            sa.select(s.c.phone, s.c.role, n.c.status, n.c.body).join(s, s.c.id == n.c.subscriber_id)
            .where(n.c.alert_id == alert.id, n.c.kind == "all_clear"))}
        bodies = {r.body for r in conn.execute(sa.select(n.c.body).where(n.c.alert_id == alert.id,
                                                                          n.c.kind == "all_clear", n.c.status == "sent"))}
    assert got == {("+6281211110001", "resident", "sent"), ("+6281211110009", "staff", "sent"),
                   ("+6281211110003", "resident", "superseded")}, got  # only those who got a warning of it
    assert all(b.startswith("BPBD LUTIM: Banjir") and "NORMAL" in b and "PEMELIHARAAN" not in b for b in bodies), bodies
    assert maintenance.announce_ended(api.services.engine, at(api, 5 * 3600)) == 0  # once
    assert events(api, alert.id).count(("announced", "normal")) == 1


def battery_alerts(api):
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(schema.alerts).where(schema.alerts.c.kind == "battery")
                            .order_by(schema.alerts.c.id)).all()


def test_a_supply_still_low_when_the_window_ends_raises_the_battery_alert_it_held_back_for_staff_only(api):
    window = open_window(api).get_json()
    gauge(api, 60, water_level=1.0, battery=10.9)  # low during the repair: nobody is told
    gauge(api, 600, water_level=1.0, battery=10.8)
    assert battery_alerts(api) == []
    at(api, 900)
    assert api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator").status_code == 200
    (alert,) = battery_alerts(api)
    assert (alert.state, alert.level) == ("active", "waspada")
    told_now = told(api, "raised", kind="battery")
    assert [role for role, _ in told_now] == ["staff"] and "10.8 V" in told_now[0][1]
    assert maintenance.announce_ended(api.services.engine, at(api, 1000)) == 0  # once
    gauge(api, 1200, water_level=1.0, battery=10.7)  # still low: the engine raises nothing more
    assert [a.state for a in battery_alerts(api)] == ["active"]
    gauge(api, 1800, water_level=1.0, battery=12.6)  # the supply recovers: the engine closes the alert
    assert [a.state for a in battery_alerts(api)] == ["closed"]


def test_a_supply_that_recovered_during_the_window_or_was_measured_long_ago_raises_nothing_when_it_ends(api):
    window = open_window(api).get_json()
    gauge(api, 60, water_level=1.0, battery=10.9)
    gauge(api, 600, water_level=1.0, battery=12.6)  # recovered before the end
    at(api, 900)
    assert api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator").status_code == 200
    assert battery_alerts(api) == []
    window = open_window(api).get_json()
    gauge(api, 1000, battery=10.9)  # low, then the station falls silent for longer than stale_after_s
    at(api, 1000 + 3 * 3600)
    assert api.call("DELETE", f"/api/v1/maintenance/{window['id']}", role="operator").status_code == 200
    assert battery_alerts(api) == []  # a voltage that old says nothing now: the offline check speaks
