"""The dashboard's own JSON (no browser): public data only without a token, the staff view with one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.browser.flood import seed_flood


@pytest.fixture
def dash(database_url):
    """The full app over a seeded flood (SQLite, and PostgreSQL when configured), and its alert ids."""
    from service.http import create_app
    from tests.support.services import make_services

    services = make_services(database_url)
    ids = seed_flood(services.engine, datetime.now(timezone.utc))
    app = create_app(services)
    app.testing = True
    return services, app.test_client(), ids


def bearer(services, role):
    from service.tokens import create_token

    stations = ["PKR-LASKAP"] if role == "gateway" else None  # a gateway token names its stations
    return {"Authorization": f"Bearer {create_token(services.engine, role, f'dash-{role}', stations=stations)[1]}"}


def test_page_is_served_at_root(dash):
    _, client, _ = dash
    page = client.get("/")
    assert page.status_code == 200 and b"EWS Luwu Timur" in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer"
    for path in ("/dashboard/static/dashboard.js", "/dashboard/static/vendor/leaflet/leaflet.js",
                 "/dashboard/static/vendor/uplot/uPlot.iife.min.js", "/dashboard/static/vendor/leaflet/LICENSE",
                 "/dashboard/static/vendor/uplot/LICENSE"):
        assert client.get(path).status_code == 200, path


def test_public_json_has_levels_thresholds_and_public_alerts_only(dash):
    _, client, ids = dash
    answer = client.get("/dashboard/public.json")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    doc = answer.get_json()
    assert doc["timezone"] == "Asia/Makassar" and doc["generated_at"].endswith("Z")
    stations = {s["id"]: s for s in doc["stations"]}
    assert len(stations) == 12
    pkr = stations["PKR-LASKAP"]
    assert pkr["status"]["level"] == "awas" and pkr["status"]["online"] is True
    assert pkr["thresholds"] == {"water_level": {"waspada": 1.8, "siaga": 2.4, "awas": 3.0}}
    assert pkr["trend"]["direction"] == "rising"
    assert stations["AGK-ANGKONA"]["status"]["online"] is False
    rain = stations["ARR-PONGKERU"]
    assert rain["thresholds"]["rainfall"]["1h"] == {"waspada": 10, "siaga": 20, "awas": 40}
    assert rain["rain"]["1h"] > 0
    kinds = {a["kind"] for a in doc["alerts"]}
    assert kinds == {"water_level", "rainfall"}  # offline and battery are for staff only
    assert doc["alerts"][0]["id"] == ids["PKR-LASKAP"]  # highest level first
    assert doc["alerts"][0]["sms"]["residents"] == 60 and doc["alerts"][0]["sms"]["residents_delivered"] == 54
    # Not yet delivered: its 4 `sent` ones (with the provider, no delivery report yet); failed: 2.
    assert (doc["alerts"][0]["sms"]["pending"], doc["alerts"][0]["sms"]["failed"]) == (4, 2)
    # The provider that carried each message (failed ones were not carried).
    assert doc["alerts"][0]["sms"]["by_provider"] == {"twilio": 40, "gammu": 22}
    acked = next(a for a in doc["alerts"] if a["id"] == ids["LAO-HARAPAN"])
    assert acked["acknowledged"]["at"] and acked["acknowledged"]["by"] is None and acked["acknowledged"]["note"] is None
    text = json.dumps(doc)
    assert "+62" not in text and "Warga 1" not in text and "Piket malam" not in text


def test_series_of_a_gauge_and_a_rain_gauge(dash):
    _, client, ids = dash
    doc = client.get("/dashboard/stations/PKR-LASKAP/series.json").get_json()
    assert doc["metric"] == "water_level" and doc["unit"] == "m" and len(doc["points"]) >= 144
    assert doc["thresholds"]["water_level"]["awas"] == 3.0
    assert [e["type"] for e in doc["events"]] == ["raised", "escalated", "escalated"]
    rain = client.get("/dashboard/stations/ARR-PONGKERU/series.json?hours=6").get_json()
    assert rain["metric"] == "rainfall" and len(rain["hourly"]) in (6, 7)
    assert rain["rolling"]["24h"][-1][1] >= max(v for _, v in rain["hourly"])
    assert client.get("/dashboard/stations/AGK-ANGKONA/series.json").get_json()["events"] == []  # offline: staff


def test_series_errors_are_problems(dash):
    _, client, _ = dash
    missing = client.get("/dashboard/stations/NOPE/series.json")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    bad = client.get("/dashboard/stations/PKR-LASKAP/series.json?hours=5")
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "hours"


def test_session_needs_a_dashboard_token(dash):
    services, client, ids = dash
    assert client.get("/dashboard/session.json").status_code == 401
    assert client.get("/dashboard/session.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/dashboard/session.json", headers=bearer(services, "gateway")).status_code == 403
    viewer = client.get("/dashboard/session.json", headers=bearer(services, "viewer")).get_json()
    assert viewer["role"] == "viewer" and viewer["can_ack"] is False
    assert viewer["may"] == {"ack": False, "close": False, "maintenance": False}
    assert ids["AGK-ANGKONA"] in {a["id"] for a in viewer["alerts"]}
    acked = next(a for a in viewer["alerts"] if a["id"] == ids["LAO-HARAPAN"])
    assert acked["acknowledged"] == {"by": "Piket malam BPBD", "at": acked["acknowledged"]["at"],
                                     "note": "Tim TRC menuju Harapan"}
    operator = client.get("/dashboard/session.json", headers=bearer(services, "operator")).get_json()
    assert operator["can_ack"] is True
    assert operator["may"] == {"ack": True, "close": True, "maintenance": True}


def test_public_json_shows_each_stations_sirens(dash):
    """A COC screen sees which sirens sound and which are in trouble (spec section 12, docs/sirens.md)."""
    import sqlalchemy as sa

    from service.db import schema

    services, client, _ = dash
    now = datetime.now(timezone.utc)
    later = (now.replace(microsecond=0) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.stations).where(schema.stations.c.id == "KLN-WOTU").values(
            sirens=[{"id": "SRN-WOTU-1", "at": "awas"}, {"id": "SRN-WOTU-2", "at": "awas"}, {"id": "SRN-WOTU-3"}],
            updated_at=now))
        conn.execute(sa.insert(schema.siren_state), [
            {"siren_id": "SRN-WOTU-1", "station_id": "KLN-WOTU", "state": "on", "trouble": None, "updated_at": now,
             "commanded": {"action": "on", "level": "awas", "alert_id": 1, "on_until": later}},
            {"siren_id": "SRN-WOTU-2", "station_id": "KLN-WOTU", "state": "unknown", "trouble": "silent",
             "updated_at": now, "commanded": {"action": "on", "level": "awas", "alert_id": 1, "on_until": later}}])
    stations = {s["id"]: s for s in client.get("/dashboard/public.json").get_json()["stations"]}
    assert stations["KLN-WOTU"]["sirens"] == [
        {"id": "SRN-WOTU-1", "state": "on", "sounding": True, "trouble": None},
        {"id": "SRN-WOTU-2", "state": "unknown", "sounding": False, "trouble": "silent"},
        {"id": "SRN-WOTU-3", "state": "unknown", "sounding": False, "trouble": None}]
    assert stations["MLL-MALILI"]["sirens"] == []


def test_maintenance_shows_to_everyone_and_what_it_held_back_to_staff(dash):
    """Spec section 10: the public sees until when a station is under maintenance; staff also see the messages held back."""
    import sqlalchemy as sa

    from service import maintenance
    from service.alerting import insert_event
    from service.db import schema

    services, client, ids = dash
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        window = maintenance.create(conn, "PKR-LASKAP", now - timedelta(minutes=5), now + timedelta(hours=2),
                                    "kalibrasi sensor", "test", now)
        insert_event(conn, ids["PKR-LASKAP"], "suppressed", "awas", now, now,
                     {"event_id": 1, "type": "escalated", "notification": "warning"}, "none")
    stations = {s["id"]: s for s in client.get("/dashboard/public.json").get_json()["stations"]}
    assert stations["PKR-LASKAP"]["status"]["maintenance"] == {"until": window["until"]}  # no reason in public
    assert "maintenance" not in stations["MLL-MALILI"]["status"]
    held = client.get("/dashboard/session.json", headers=bearer(services, "viewer")).get_json()["suppressed"]
    assert held["count"] == 1 and held["by_station"] == {"PKR-LASKAP": 1}
    (item,) = held["items"]
    assert (item["alert_id"], item["station_id"], item["level"], item["type"], item["notification"]) == (
        ids["PKR-LASKAP"], "PKR-LASKAP", "awas", "escalated", "warning")
    with services.engine.begin() as conn:
        maintenance.end(conn, window["id"], "test", datetime.now(timezone.utc))
        conn.execute(sa.update(schema.alert_events).where(schema.alert_events.c.type == "suppressed")
                     .values(recorded_at=now - timedelta(hours=25)))
    stations = {s["id"]: s for s in client.get("/dashboard/public.json").get_json()["stations"]}
    assert "maintenance" not in stations["PKR-LASKAP"]["status"]  # the snapshot saw the window end
    held = client.get("/dashboard/session.json", headers=bearer(services, "viewer")).get_json()["suppressed"]
    assert held == {"count": 0, "by_station": {}, "items": []}  # the last 24 hours only


def test_public_json_answers_304_until_this_process_commits_a_change(dash):
    """One shared answer with its ETag; a change committed here shows (and changes the ETag) at the next request."""
    import sqlalchemy as sa

    from service.db import schema

    services, client, _ = dash
    first = client.get("/dashboard/public.json")
    etag = first.headers["ETag"]
    held = client.get("/dashboard/public.json", headers={"If-None-Match": etag})
    assert held.status_code == 304 and held.headers["ETag"] == etag and held.headers["Cache-Control"] == "no-store"
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.stations).where(schema.stations.c.id == "MLL-MALILI").values(
            name="Pos Malili Baru", updated_at=datetime.now(timezone.utc)))
    changed = client.get("/dashboard/public.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert {s["id"]: s["name"] for s in changed.get_json()["stations"]}["MLL-MALILI"] == "Pos Malili Baru"


def test_trends_and_rain_sums_are_the_same_however_the_stations_are_chunked(dash, monkeypatch):
    """The public view asks every station's trend in statements of TREND_CHUNK stations: the chunking changes nothing."""
    from service.web import data, trends

    services, _, _ = dash
    now = datetime.now(timezone.utc)
    whole = data.public_view(services.engine, now, "Asia/Makassar")["stations"]
    monkeypatch.setattr(trends, "TREND_CHUNK", 2)
    chunked = data.public_view(services.engine, now, "Asia/Makassar")["stations"]
    assert [(s.get("trend"), s.get("rain")) for s in chunked] == [(s.get("trend"), s.get("rain")) for s in whole]
    assert any(s.get("trend") for s in whole) and any(s.get("rain", {}).get("24h") for s in whole)


def test_the_held_public_answer_is_served_beneath_flask_as_flask_serves_it(dash, monkeypatch):
    """Once held, public.json is answered by service.http.answers.HeldBeneath: the same status, headers and bytes."""
    services, client, _ = dash
    built = client.get("/dashboard/public.json")  # builds it, through Flask
    monkeypatch.setattr("flask.Flask.full_dispatch_request", lambda self: pytest.fail("not beneath Flask"))
    held = client.get("/dashboard/public.json")
    assert held.status_code == built.status_code == 200 and held.get_data() == built.get_data()
    assert sorted(held.headers.items()) == sorted(built.headers.items())
