"""The alert lifecycle on a real database, driven through the real ingest path.

SQLite always; PostgreSQL too when EWS_TEST_DATABASE_URL is set (a fresh database per test).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts.model import Sample
from service import alerting
from service.db.schema import alert_events, alerts, station_state, stations
from service.ingest import Message
from tests.support.ingest import iso, send_at
from tests.support.services import make_services

STATION = "PKR-LASKAP"  # seed: waspada 1.8, siaga 2.4, awas 3.0, margin 0.1, clear_hold 600 s, rise 0.5 m/h
NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
T0 = NOW - timedelta(days=1)


def send(services, minute: float, station: str = STATION, **values) -> list[dict]:
    """One sample at T0 + ``minute``, received a minute later; return the alert events it caused."""
    events = send_at(services, station, T0 + timedelta(minutes=minute), values, timedelta(minutes=1))
    # The station's own events: a rise also warns the stations downstream (upstream alerts, tested apart).
    return [e for e in events if e["kind"] != "upstream"]


def set_rules(services, station: str, **changes) -> None:
    with services.engine.begin() as conn:
        rules = conn.execute(sa.select(stations.c.rules).where(stations.c.id == station)).scalar_one()
        for key, value in changes.items():
            rules = {**rules, key: value}
        conn.execute(sa.update(stations).where(stations.c.id == station).values(rules=rules))
    services.ingestor.forget_stations()


def alert_rows(services, station: str = STATION, kind: str | None = None):
    with services.engine.connect() as conn:
        query = sa.select(alerts).where(alerts.c.station_id == station).order_by(alerts.c.id)
        if kind:
            query = query.where(alerts.c.kind == kind)
        return conn.execute(query).all()


def events_of(services, alert_id: int) -> list[tuple[str, str, str]]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(alert_events).where(alert_events.c.alert_id == alert_id)
                            .order_by(alert_events.c.id)).all()
    return [(r.type, r.level, r.dispatch) for r in rows]


def detail_of(services, alert_id: int) -> dict:
    with services.engine.connect() as conn:
        return alerting.get_alert(conn, alert_id)


def state_of(services, station: str = STATION):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(station_state).where(station_state.c.station_id == station)).first()


def test_a_flood_episode_opens_escalates_and_closes_one_alert(services):
    levels = [1.0, 1.9, 2.5, 3.1, 2.0, 2.0, 1.0, 1.0]
    events = [send(services, 10 * i, water_level=v) for i, v in enumerate(levels)]
    assert [[(e["type"], e["level"]) for e in batch] for batch in events] == [
        [], [("raised", "waspada")], [("escalated", "siaga")], [("escalated", "awas")],
        [], [("deescalated", "waspada")], [], [("cleared", "normal")]]
    (alert,) = alert_rows(services)
    assert (alert.kind, alert.state, alert.level, alert.peak_level) == ("water_level", "closed", "normal", "awas")
    assert alert.opened_at == T0 + timedelta(minutes=10)
    assert alert.closed_at == T0 + timedelta(minutes=70)
    assert events_of(services, alert.id) == [
        ("raised", "waspada", "pending"), ("escalated", "siaga", "pending"), ("escalated", "awas", "pending"),
        ("deescalated", "waspada", "none"), ("cleared", "normal", "pending")]
    state = state_of(services)
    assert state.level == "normal" and state.engine["v"] == 2
    detail = detail_of(services, alert.id)
    assert detail["events"][0]["reading"] == {"metric": "water_level", "value": 1.9,
                                               "ts": iso(T0 + timedelta(minutes=10))}
    assert detail["events"][0]["at"] == iso(T0 + timedelta(minutes=10))


def test_the_next_episode_is_a_new_alert(services):
    for i, v in enumerate([2.0, 1.0, 1.0, 2.0]):
        send(services, 10 * i, water_level=v)
    first, second = alert_rows(services)
    assert first.state == "closed" and second.state == "active"


def test_redelivery_and_replay_record_nothing_new(services):
    for i, v in enumerate([1.0, 2.5, 3.1]):
        send(services, 10 * i, water_level=v)
    before = events_of(services, alert_rows(services)[0].id)
    for i, v in enumerate([1.0, 2.5, 3.1]):
        assert send(services, 10 * i, water_level=v) == []
    assert events_of(services, alert_rows(services)[0].id) == before


def test_notify_from_and_all_clear_decide_what_is_pending(services):
    set_rules(services, STATION, notify_from="siaga", all_clear=False)
    for i, v in enumerate([1.9, 2.5, 1.0, 1.0]):
        send(services, 10 * i, water_level=v)
    (alert,) = alert_rows(services)
    assert events_of(services, alert.id) == [
        ("raised", "waspada", "none"), ("escalated", "siaga", "pending"), ("cleared", "normal", "none")]


def test_an_episode_below_notify_from_clears_silently(services):
    set_rules(services, STATION, notify_from="awas")
    for i, v in enumerate([2.5, 1.0, 1.0]):
        send(services, 10 * i, water_level=v)
    (alert,) = alert_rows(services)
    assert events_of(services, alert.id) == [("raised", "siaga", "none"), ("cleared", "normal", "none")]
    assert alert.last_notified_at is None


def test_battery_alerts_go_to_staff_and_do_not_change_the_station_level(services):
    for i, v in enumerate([12.4, 11.2, 11.6, 12.0]):
        send(services, 10 * i, battery=v)
    (alert,) = alert_rows(services, kind="battery")
    assert events_of(services, alert.id) == [("raised", "waspada", "pending"), ("cleared", "normal", "pending")]
    assert state_of(services).level == "normal"


def test_rainfall_alert_from_a_rain_gauge(services):
    # ARR-MANGKUTANA sends rainfall increments; default rules: 1 h >= 10 mm is waspada.
    for i in range(4):
        send(services, 10 * i, station="ARR-MANGKUTANA", rainfall=3.0)
    (alert,) = alert_rows(services, station="ARR-MANGKUTANA")
    assert (alert.kind, alert.level) == ("rainfall", "waspada")
    detail = detail_of(services, alert.id)
    assert detail["events"][0]["reading"]["sums"]["1h"] == 12.0
    assert state_of(services, "ARR-MANGKUTANA").level == "waspada"


def test_pending_hold_timer_survives_a_restart(services, database_url):
    set_rules(services, STATION, water_level={"waspada": 1.8, "siaga": 2.4, "awas": 3.0, "clear_margin": 0.1,
                                              "hold_s": 1200, "clear_hold_s": 600})
    assert send(services, 0, water_level=2.0) == []
    assert send(services, 10, water_level=2.0) == []
    services.engine.dispose()
    restarted = make_services(database_url, seed=None)
    try:
        assert [(e["type"], e["level"]) for e in send(restarted, 20, water_level=2.0)] == [("raised", "waspada")]
    finally:
        restarted.engine.dispose()


def test_a_late_backlog_is_judged_by_measurement_time(services):
    # A gateway flushes an hour of backlog in one array after a cut, oldest last.
    times = [T0 + timedelta(minutes=10 * i) for i in range(6)]
    values = [1.0, 1.9, 2.5, 2.6, 2.6, 2.6]
    body = [{"ts": iso(ts), "values": {"water_level": v}} for ts, v in reversed(list(zip(times, values)))]
    message = Message(topic=f"ews/v1/stations/{STATION}/readings", payload=json.dumps(body).encode(),
                      received_at=times[-1] + timedelta(minutes=1))
    events = [e for e in services.ingestor.ingest([message])[0].events if e["kind"] != "upstream"]
    assert [(e["type"], e["level"], e["at"]) for e in events] == [
        ("raised", "waspada", iso(times[1])), ("escalated", "siaga", iso(times[2]))]


def test_silent_station_goes_offline_within_one_period_and_back_with_its_next_sample(services):
    send(services, 0, water_level=1.0)
    last_seen = state_of(services).last_seen
    stale = 1800  # the default stale_after_s
    now, period = last_seen, timedelta(seconds=30)
    while alerting.check_offline(services.engine, now) == 0:
        assert now - last_seen <= timedelta(seconds=stale) + period, "never went offline"
        now += period
    assert timedelta(seconds=stale) <= now - last_seen <= timedelta(seconds=stale) + period
    assert alerting.check_offline(services.engine, now) == 0  # idempotent
    assert alerting.check_offline(services.engine, now + timedelta(hours=2)) == 0
    assert state_of(services).online is False
    (alert,) = alert_rows(services, kind="offline")
    assert (alert.state, alert.level) == ("active", "waspada")
    assert events_of(services, alert.id) == [("raised", "waspada", "pending")]
    # Other seeded stations have never reported: not installed yet, so not offline.
    assert len(alert_rows(services, station="MLL-MALILI")) == 0

    events = send(services, 120, water_level=1.0)
    assert [(e["kind"], e["type"]) for e in events] == [("offline", "cleared")]
    (alert,) = alert_rows(services, kind="offline")
    assert alert.state == "closed"
    assert events_of(services, alert.id) == [("raised", "waspada", "pending"), ("cleared", "normal", "pending")]
    assert state_of(services).online is True


def test_awas_reminders_repeat_every_repeat_awas_s_once(services):
    set_rules(services, STATION, stale_after_s=7 * 86400)  # the samples are a day old: fresh for this station
    send(services, 0, water_level=3.2)
    (alert,) = alert_rows(services)
    notified = alert.last_notified_at
    assert alerting.remind_awas(services.engine, notified + timedelta(seconds=3599)) == 0
    later = notified + timedelta(seconds=3600)
    assert alerting.remind_awas(services.engine, later) == 1
    assert alerting.remind_awas(services.engine, later) == 0
    assert alerting.remind_awas(services.engine, later + timedelta(seconds=3600)) == 1
    assert events_of(services, alert.id)[-2:] == [("reminded", "awas", "pending")] * 2
    detail = detail_of(services, alert.id)
    assert detail["events"][-1]["reading"]["value"] == 3.2


def test_concurrent_reminders_record_one_event(services):
    set_rules(services, STATION, stale_after_s=7 * 86400)  # the samples are a day old: fresh for this station
    send(services, 0, water_level=3.2)
    (alert,) = alert_rows(services)
    when = alert.last_notified_at + timedelta(hours=1)
    barrier, counts = threading.Barrier(4), []

    def remind():
        barrier.wait()
        counts.append(alerting.remind_awas(services.engine, when))

    threads = [threading.Thread(target=remind) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 1
    assert [e for e in events_of(services, alert.id) if e[0] == "reminded"] == [("reminded", "awas", "pending")]


def test_no_reminder_below_awas_or_when_switched_off(services):
    send(services, 0, water_level=2.5)
    assert alerting.remind_awas(services.engine, NOW + timedelta(days=1)) == 0
    set_rules(services, STATION, repeat_awas_s=0)
    send(services, 10, water_level=3.2)
    assert alerting.remind_awas(services.engine, NOW + timedelta(days=1)) == 0


def test_acknowledge(services):
    send(services, 0, water_level=2.5)
    (alert,) = alert_rows(services)
    with services.engine.begin() as conn:
        doc = alerting.acknowledge(conn, alert.id, "operator-1", "tim sudah di lokasi", NOW)
    assert doc["acknowledged"] == {"by": "operator-1", "at": iso(NOW), "note": "tim sudah di lokasi"}
    assert doc["events"][-1]["type"] == "acknowledged" and doc["events"][-1]["by"] == "operator-1"
    assert events_of(services, alert.id)[-1] == ("acknowledged", "siaga", "none")
    with services.engine.begin() as conn, pytest.raises(alerting.AlreadyAcknowledged):
        alerting.acknowledge(conn, alert.id, "operator-2", None, NOW)
    with services.engine.begin() as conn, pytest.raises(LookupError):
        alerting.acknowledge(conn, 99999, "operator-2", None, NOW)


def test_apply_samples_creates_a_missing_state_row(services):
    with services.engine.begin() as conn:
        station = conn.execute(sa.select(stations).where(stations.c.id == "MLL-MALILI")).first()._mapping
        events = alerting.apply_samples(conn, station, [Sample("MLL-MALILI", "water_level", T0, 4.5)], NOW,
                                        exercise=True)
    assert [(e["kind"], e["type"], e["level"]) for e in events] == [("water_level", "raised", "awas")]
    (alert,) = alert_rows(services, station="MLL-MALILI")
    assert alert.exercise is True
    assert state_of(services, "MLL-MALILI").level == "awas"


def test_invalid_stored_rules_fall_back_to_the_defaults(services):
    set_rules(services, STATION, water_level={"waspada": 3.0, "siaga": 2.0})
    assert [(e["type"], e["level"]) for e in send(services, 0, water_level=2.6)] == [("raised", "siaga")]


# --- the routes (real Flask app, real tokens) -------------------------------------------


@pytest.fixture
def api(database_url):
    from tests.support.api import make_harness

    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


def test_get_and_put_rules_with_audit(api):
    got = api.call("GET", f"/api/v1/stations/{STATION}/rules", role="viewer")
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.get_json()["water_level"]["waspada"] == 1.8
    assert api.call("PUT", f"/api/v1/stations/{STATION}/rules", role="operator", json={}).status_code == 403
    assert api.call("GET", f"/api/v1/stations/{STATION}/rules", role=None).status_code == 401
    assert api.call("GET", "/api/v1/stations/NOPE/rules", role="viewer").status_code == 404

    body = {"water_level": {"waspada": 1.5, "siaga": 2.0, "awas": 2.5}, "rainfall": {"3h": None},
            "notify_from": "siaga"}
    put = api.call("PUT", f"/api/v1/stations/{STATION}/rules", json=body)
    assert put.status_code == 200, put.get_data(as_text=True)
    doc = put.get_json()
    assert doc["water_level"]["awas"] == 2.5 and doc["water_level"]["clear_hold_s"] == 600  # defaults fill in
    assert doc["rainfall"]["3h"] is None and doc["notify_from"] == "siaga"
    assert api.call("GET", f"/api/v1/stations/{STATION}/rules", role="viewer").get_json() == doc
    with api.services.engine.connect() as conn:
        entry = conn.execute(sa.select(schema_audit()).order_by(schema_audit().c.id.desc())).first()
    assert (entry.action, entry.entity, entry.entity_id) == ("update", "rules", STATION)
    assert entry.before["water_level"]["waspada"] == 1.8 and entry.after["water_level"]["waspada"] == 1.5
    # The ingest path judges with the new rules at once.
    assert [(e["type"], e["level"]) for e in send(api.services, 0, water_level=2.1)] == [("raised", "siaga")]


def schema_audit():
    from service.db.schema import audit_log

    return audit_log


def test_put_rules_422_names_each_bad_field(api):
    bad = {"water_level": {"waspada": 3.0, "siaga": 2.0}, "rainfall": {"2h": {"waspada": 5}},
           "notify_from": "merah", "colour": "red"}
    response = api.call("PUT", f"/api/v1/stations/{STATION}/rules", json=bad)
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert sorted(e["field"] for e in response.get_json()["errors"]) == [
        "colour", "notify_from", "rainfall.2h", "water_level.awas", "water_level.siaga"]
    assert api.call("PUT", f"/api/v1/stations/{STATION}/rules", json=[1]).status_code == 422
    malformed = api.call("PUT", f"/api/v1/stations/{STATION}/rules", data=b"{nope", content_type="application/json")
    assert malformed.status_code == 400


def test_alert_list_detail_and_ack(api):
    for i, v in enumerate([2.0, 1.0, 1.0, 1.6, 2.5, 3.2]):  # steps within quality.max_step_per_min
        send(api.services, 10 * i, water_level=v)
    send(api.services, 0, station="ARR-MANGKUTANA", rainfall=15.0)
    listed = api.call("GET", "/api/v1/alerts", role="viewer")
    assert listed.status_code == 200
    everything = listed.get_json()["items"]
    items = [a for a in everything if a["kind"] != "upstream"]  # and Malili's wave from Laskap
    assert [(a["station_id"], a["state"]) for a in items] == [
        (STATION, "active"), ("ARR-MANGKUTANA", "active"), (STATION, "closed")]
    active = api.call("GET", f"/api/v1/alerts?state=active&station_id={STATION}", role="viewer").get_json()["items"]
    assert len(active) == 1
    alert = active[0]
    assert {k: alert[k] for k in ("kind", "level", "peak_level", "state", "acknowledged", "closed_at")} == {
        "kind": "water_level", "level": "awas", "peak_level": "awas", "state": "active", "acknowledged": None,
        "closed_at": None}
    page = api.call("GET", "/api/v1/alerts?limit=2", role="viewer").get_json()
    rest = api.call("GET", f"/api/v1/alerts?limit=3&cursor={page['next_cursor']}", role="viewer").get_json()
    assert [a["id"] for a in page["items"] + rest["items"]] == [a["id"] for a in everything]
    assert rest["next_cursor"] is None
    assert api.call("GET", "/api/v1/alerts?state=open", role="viewer").status_code == 422

    detail = api.call("GET", f"/api/v1/alerts/{alert['id']}", role="viewer").get_json()
    assert [(e["type"], e["level"]) for e in detail["events"]] == [("raised", "siaga"), ("escalated", "awas")]
    assert detail["events"][1]["reading"]["value"] == 3.2
    assert api.call("GET", "/api/v1/alerts/999999", role="viewer").status_code == 404

    assert api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", role="viewer", json={}).status_code == 403
    acked = api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", role="operator", json={"note": "BPBD di lokasi"})
    assert acked.status_code == 200, acked.get_data(as_text=True)
    body = acked.get_json()
    assert body["acknowledged"]["note"] == "BPBD di lokasi" and body["acknowledged"]["by"]
    assert body["events"][-1]["type"] == "acknowledged"
    again = api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", role="operator")
    assert again.status_code == 409 and again.content_type == "application/problem+json"
    assert api.call("POST", "/api/v1/alerts/999999/ack", role="operator").status_code == 404
    assert api.call("POST", f"/api/v1/alerts/{items[1]['id']}/ack", role="operator",
                    json={"nota": "x"}).status_code == 422
    spec = api.call("GET", "/api/v1/openapi.json", role=None).get_json()
    assert "/api/v1/alerts/{alert_id}/ack" in spec["paths"] and "/api/v1/stations/{station_id}/rules" in spec["paths"]
