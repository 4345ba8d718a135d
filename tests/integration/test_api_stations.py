"""Stations, readings, dead letters: real Flask app over a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db import schema
from tests.support.api import make_harness

NEW = {"id": "TST-01", "name": "Pos Uji", "river": "Sungai Uji", "kecamatan": "Malili", "desa": "Baruga",
       "lat": -2.6, "lon": 121.1, "metrics": ["water_level", "battery"],
       "plausible": {"water_level": [0, 8]}, "rules": {"water_level": {"waspada": 2.5, "siaga": 3.0, "awas": 3.5}}}


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def fields(response) -> list[str]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    return [e["field"] for e in response.get_json()["errors"]]


def test_create_get_patch_delete_station_with_audit(api):
    created = api.call("POST", "/api/v1/stations", json=NEW)
    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["areas"] == [{"kecamatan": "Malili", "desa": "Baruga"}]
    assert body["status"] == {"level": "normal", "online": False, "last_seen": None, "latest": {}}
    with api.services.engine.connect() as conn:
        rules = conn.execute(sa.select(schema.stations.c.rules).where(schema.stations.c.id == "TST-01")).scalar_one()
    assert rules["water_level"]["awas"] == 3.5 and rules["water_level"]["clear_hold_s"] == 600  # documented default
    assert rules["rainfall"] is None and rules["battery"]["low"] == 11.5 and "_source" not in rules

    assert api.call("POST", "/api/v1/stations", json=NEW).status_code == 409
    assert api.call("GET", "/api/v1/stations/TST-01", "viewer").get_json()["name"] == "Pos Uji"
    patched = api.call("PATCH", "/api/v1/stations/TST-01", json={"name": "Pos Uji Baru", "expected_interval_s": 300})
    assert patched.status_code == 200 and patched.get_json()["expected_interval_s"] == 300
    assert api.call("DELETE", "/api/v1/stations/TST-01").status_code == 204
    assert api.call("GET", "/api/v1/stations/TST-01").status_code == 404
    trail = api.call("GET", "/api/v1/audit?entity=station&entity_id=TST-01").get_json()["items"]
    assert [a["action"] for a in trail] == ["delete", "update", "create"]
    assert trail[1]["before"]["name"] == "Pos Uji" and trail[1]["after"]["name"] == "Pos Uji Baru"
    assert trail[0]["actor"].startswith("test admin#")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"id": "bad id!"}, "id"),
        ({"id": "x" * 65}, "id"),
        ({"metrics": ["water_level", "temperature"]}, "metrics.1"),
        ({"metrics": []}, "metrics"),
        ({"lat": 91}, "lat"),
        ({"lat": "north"}, "lat"),
        ({"plausible": {"water_level": [5, 1]}}, "plausible.water_level"),
        ({"plausible": {"water_level": [1]}}, "plausible.water_level.value"),
        ({"areas": [{"desa": "Baruga"}]}, "areas.0.kecamatan"),
        ({"metrics": ["rain_tips"]}, "mm_per_tip"),
        ({"metrics": ["rainfall", "rain_tips"], "mm_per_tip": 0.2}, "metrics"),
        ({"rules": {"water_level": {"waspada": 1, "siaga": "high", "awas": 3}}}, "rules.water_level.siaga"),
        ({"rules": {"water_level": {"awas": 3.5}}}, "rules.water_level.waspada"),
        ({"rules": {"battery": {"low": 11}}}, "rules.water_level"),
        ({"expected_interval_s": 10**30}, "expected_interval_s"),
        ({"name": "a\x00b"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_station_gets_422_naming_the_field(api, change, field):
    body = {**NEW, **change}
    names = fields(api.call("POST", "/api/v1/stations", json=body))
    assert any(name == field or name.startswith(field) for name in names), names


def test_missing_name_and_malformed_json(api):
    assert "name" in fields(api.call("POST", "/api/v1/stations", json={"id": "A", "metrics": ["water_level"]}))
    bad = api.call("POST", "/api/v1/stations", data=b"{nope", content_type="application/json")
    assert bad.status_code == 400 and bad.content_type == "application/problem+json"
    wrong_type = api.call("POST", "/api/v1/stations", data=b"id=A", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code in (400, 415, 422)
    assert api.call("PATCH", "/api/v1/stations/PKR-LASKAP", json={"lat": 1.0}).status_code == 200
    assert "lat" in fields(api.call("PATCH", "/api/v1/stations/PKR-LASKAP", json={"lat": None}))


def test_delete_refused_while_an_alert_is_active(api):
    now = datetime.now(timezone.utc)
    with api.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.alerts).values(station_id="PKR-LASKAP", kind="water_level", level="siaga",
                                                     peak_level="siaga", state="active", opened_at=now))
    refused = api.call("DELETE", "/api/v1/stations/PKR-LASKAP")
    assert refused.status_code == 409 and refused.content_type == "application/problem+json"
    assert api.call("GET", "/api/v1/stations/PKR-LASKAP").status_code == 200


def test_station_list_pages_with_cursor(api):
    seen, cursor = [], None
    while True:
        url = "/api/v1/stations?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", url, "viewer").get_json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 10
    assert "cursor" in fields(api.call("GET", "/api/v1/stations?cursor=garbage!!", "viewer"))
    assert "limit" in fields(api.call("GET", "/api/v1/stations?limit=1001", "viewer"))
    assert "limit" in fields(api.call("GET", "/api/v1/stations?limit=0", "viewer"))


def _insert_readings(api, station_id, metric, start, values, step=timedelta(minutes=10)):
    with api.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.readings), [
            {"station_id": station_id, "metric": metric, "ts": start + i * step, "value": v, "received_at": start}
            for i, v in enumerate(values)
        ])


def test_readings_filters_pages_and_rainfall_windows(api):
    start = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
    _insert_readings(api, "PKR-LASKAP", "water_level", start, [1.0 + i / 10 for i in range(25)])
    _insert_readings(api, "PKR-LASKAP", "battery", start, [12.5] * 3)
    page = api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?metric=water_level&limit=10", "viewer").get_json()
    assert len(page["items"]) == 10 and page["next_cursor"]
    assert page["items"][0] == {"ts": "2026-11-30T04:00:00Z", "value": 3.4, "quality": "good"}
    collected = page["items"]
    while page["next_cursor"]:
        page = api.call("GET", f"/api/v1/stations/PKR-LASKAP/readings?metric=water_level&limit=10"
                               f"&cursor={page['next_cursor']}", "viewer").get_json()
        collected += page["items"]
    assert len(collected) == 25 and collected[-1]["ts"] == "2026-11-30T00:00:00Z"
    mixed = api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?from=2026-11-30T00:00:00Z"
                            "&to=2026-11-30T00:20:00Z&order=asc", "viewer").get_json()["items"]
    assert [(r["metric"], r["ts"][11:16]) for r in mixed] == [
        ("water_level", "00:00"), ("battery", "00:00"), ("water_level", "00:10"), ("battery", "00:10")]

    rain_station = "ARR-MALILI"
    _insert_readings(api, rain_station, "rainfall", start, [1.0] * 12 + [5.0] * 6)  # 3 hours, every 10 min
    windowed = api.call("GET", f"/api/v1/stations/{rain_station}/readings?metric=rainfall&window=1h&limit=3",
                        "viewer").get_json()
    assert windowed["window"] == "1h"
    assert [r["sum"] for r in windowed["items"]] == [30.0, 26.0, 22.0]  # (ts - 1h, ts]
    day = api.call("GET", f"/api/v1/stations/{rain_station}/readings?metric=rainfall&window=24h&order=asc&limit=13",
                   "viewer").get_json()["items"]
    assert day[0]["sum"] == 1.0 and day[11]["sum"] == 12.0 and day[12]["sum"] == 17.0
    assert "window" in fields(api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?window=1h", "viewer"))
    assert "window" in fields(api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?metric=rainfall&window=2h",
                                       "viewer"))
    assert "from" in fields(api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?from=yesterday", "viewer"))
    assert "to" in fields(api.call("GET", "/api/v1/stations/PKR-LASKAP/readings?from=2026-11-30T01:00:00Z"
                                          "&to=2026-11-30T00:00:00Z", "viewer"))
    assert api.call("GET", "/api/v1/stations/NOPE/readings", "viewer").status_code == 404


def test_post_readings_reports_accepted_duplicates_and_rejected(api):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ts = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    body = [{"ts": ts, "values": {"water_level": 2.1, "battery": 12.4, "humidity": 80}},
            {"ts": "not a time", "values": {"water_level": 2.0}}]
    first = api.call("POST", "/api/v1/stations/PKR-LASKAP/readings", "gateway", json=body)
    assert first.status_code == 200, first.get_data(as_text=True)
    result = first.get_json()
    assert sorted(a["metric"] for a in result["accepted"]) == ["battery", "water_level"]
    assert sorted(r["reason"] for r in result["rejected"]) == ["bad_timestamp", "unknown_metric"]
    again = api.call("POST", "/api/v1/stations/PKR-LASKAP/readings", "gateway", json=body[:1]).get_json()
    assert again["accepted"] == [] and again["duplicates"] == 2

    nothing = api.call("POST", "/api/v1/stations/PKR-LASKAP/readings", "gateway", data=b"\xff\x00garbage")
    assert nothing.status_code == 422 and nothing.content_type == "application/problem+json"
    assert nothing.get_json()["errors"][0]["message"].startswith("malformed_json")

    latest = api.call("GET", "/api/v1/stations/PKR-LASKAP", "viewer").get_json()["status"]
    assert latest["latest"]["water_level"]["value"] == 2.1

    # An unknown station: 404, and the payload is kept for replay once the station is registered.
    assert api.call("POST", "/api/v1/stations/NOPE/readings", "admin", json=body).status_code == 404

    letters = api.call("GET", "/api/v1/dead-letters?limit=2", "viewer").get_json()
    assert [d["reason"] for d in letters["items"]] == ["unknown_station", "malformed_json"]  # newest first
    assert letters["items"][1]["source"] == "http"
    assert letters["next_cursor"]
    rest = api.call("GET", f"/api/v1/dead-letters?cursor={letters['next_cursor']}", "viewer").get_json()
    ids = [d["id"] for d in letters["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) >= 3
    only = api.call("GET", "/api/v1/dead-letters?reason=unknown_metric", "viewer").get_json()["items"]
    assert only and all("unknown_metric" in d["reasons"] for d in only)


LONG_NAMED = {**NEW, "id": "TST-LONG", "name": "Pos TMA Bendungan Karebbe Desa Ussu Kecamatan Malili",
              "river": "Sungai Larona Hulu"}


def test_a_station_whose_warnings_would_not_fit_one_sms_is_refused_naming_the_length(api):
    refused = api.call("POST", "/api/v1/stations", json=LONG_NAMED)
    (error,) = refused.get_json()["errors"]
    assert refused.status_code == 422 and error["field"] == "name"
    length = int(error["message"].split("up to ")[1].split()[0])
    assert length > 160 and "sms_name" in error["message"]
    created = api.call("POST", "/api/v1/stations", json={**LONG_NAMED, "sms_name": "Bendungan Karebbe Ussu"})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["sms_name"] == "Bendungan Karebbe Ussu"


def test_changing_a_station_is_checked_the_same_way(api):
    url = "/api/v1/stations/PKR-LASKAP"
    assert fields(api.call("PATCH", url, json={"name": LONG_NAMED["name"], "river": LONG_NAMED["river"]})) == ["name"]
    assert fields(api.call("PATCH", url, json={"sms_name": "x" * 25})) == ["sms_name"]
    assert fields(api.call("PATCH", url, json={"sms_name": "[Laskap]"})) == ["sms_name"]
    fixed = api.call("PATCH", url, json={"name": LONG_NAMED["name"], "river": LONG_NAMED["river"], "sms_name": "Laskap"})
    assert fixed.status_code == 200 and fixed.get_json()["sms_name"] == "Laskap"
    assert api.call("PATCH", url, json={"sms_name": None}).status_code == 422  # back to the long name: too long


def test_the_sms_of_a_station_with_sms_name_names_that_place(api):
    import json
    import os

    from service import subscribers
    from service.bootstrap import sms_dispatcher
    from service.dispatch import ConsoleProvider
    from service.ingest import Message

    assert api.call("POST", "/api/v1/stations", json={**LONG_NAMED, "sms_name": "Karebbe Ussu"}).status_code == 201
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with api.services.engine.begin() as conn:
        subscribers.create(conn, {"phone": "0812-1111-0001", "areas": [{"kecamatan": "Malili", "desa": "Baruga"}]}, now)
    payload = json.dumps({"ts": now.isoformat(), "values": {"water_level": 3.6}}).encode()
    api.services.ingestor.ingest([Message("ews/v1/stations/TST-LONG/readings", payload, now)])
    dispatcher = sms_dispatcher(api.services, ConsoleProvider(stream=open(os.devnull, "w")))
    try:
        dispatcher.run_until_idle()
    finally:
        dispatcher.stop()
    with api.services.engine.connect() as conn:
        (body,) = conn.execute(sa.select(schema.notifications.c.body)).scalars().all()
    assert body.startswith("BPBD LUTIM: AWAS banjir. TMA Karebbe Ussu 3.6 m") and len(body) <= 160
