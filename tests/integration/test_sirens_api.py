"""Sirens through the API (spec section 12): a station's ``sirens`` (validated, 422 naming the field)."""

from __future__ import annotations

import pytest

from tests.support.api import make_harness, validation_errors


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def test_a_station_lists_its_sirens_with_the_documented_defaults(api):
    patched = api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [{"id": "SRN-WOTU-1", "at": "siaga"},
                                                                              {"id": "SRN-WOTU-2", "upstream": True}]})
    assert patched.status_code == 200, patched.get_data(as_text=True)
    assert patched.get_json()["sirens"] == [
        {"id": "SRN-WOTU-1", "at": "siaga", "upstream": False, "duration_s": 600},
        {"id": "SRN-WOTU-2", "at": "awas", "upstream": True, "duration_s": 600}]
    assert api.call("GET", "/api/v1/stations/MLL-MALILI", "viewer").get_json()["sirens"] == []
    trail = api.call("GET", "/api/v1/audit?entity=station&entity_id=KLN-WOTU").get_json()["items"]
    assert trail[0]["after"]["sirens"][0]["id"] == "SRN-WOTU-1"


@pytest.mark.parametrize("sirens, field", [
    ([{"id": "SRN 1"}], "sirens.0.id"),
    ([{"id": "SRN-1", "at": "normal"}], "sirens.0.at"),
    ([{"id": "SRN-1", "at": "awas", "loud": True}], "sirens.0.loud"),
    ([{"id": "SRN-1", "duration_s": 5}], "sirens.0.duration_s"),
    ([{"id": "SRN-1"}, {"id": "SRN-1"}], "sirens.1.id"),
])
def test_a_bad_siren_is_422_naming_the_field(api, sirens, field):
    assert field in [e["field"] for e in validation_errors(api.call("PATCH", "/api/v1/stations/KLN-WOTU",
                                                         json={"sirens": sirens}))]


def test_a_siren_belongs_to_one_station(api):
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [{"id": "SRN-1"}]}).status_code == 200
    [error] = validation_errors(api.call("PATCH", "/api/v1/stations/MLL-MALILI", json={"sirens": [{"id": "SRN-1"}]}))
    assert error == {"field": "sirens.0.id", "message": "'SRN-1' is already a siren of station KLN-WOTU"}
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [{"id": "SRN-1", "at": "siaga"}]}
                    ).status_code == 200  # its own station may change it
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", "operator", json={"sirens": []}).status_code == 403


def with_sirens(api) -> None:
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [
        {"id": "SRN-WOTU-1", "at": "siaga"}, {"id": "SRN-WOTU-2"}]}).status_code == 200
    assert api.call("PATCH", "/api/v1/stations/MLL-MALILI", json={"sirens": [{"id": "SRN-MALILI-1"}]}).status_code == 200


def test_get_sirens_lists_every_siren_with_its_last_command_and_ack(api):
    with_sirens(api)
    page = api.call("GET", "/api/v1/sirens?limit=2", "viewer").get_json()
    assert [s["id"] for s in page["items"]] == ["SRN-MALILI-1", "SRN-WOTU-1"] and page["next_cursor"]
    rest = api.call("GET", f"/api/v1/sirens?limit=2&cursor={page['next_cursor']}", "viewer").get_json()
    assert [s["id"] for s in rest["items"]] == ["SRN-WOTU-2"] and rest["next_cursor"] is None
    siren = page["items"][1]
    assert {k: siren[k] for k in ("station_id", "state", "last_command", "last_ack", "at")} == {
        "station_id": "KLN-WOTU", "state": "unknown", "last_command": None, "last_ack": None, "at": "siaga"}
    assert api.call("GET", "/api/v1/sirens?cursor=nonsense", "viewer").status_code == 422
    assert api.call("GET", "/api/v1/sirens", None).status_code == 401
    assert api.call("GET", "/api/v1/sirens/SRN-NONE", "viewer").status_code == 404


def test_operator_commands_are_stored_for_the_controller_and_audited(api):
    with_sirens(api)
    assert api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "viewer", json={"action": "on"}).status_code == 403
    assert [e["field"] for e in validation_errors(api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "operator",
                                                json={"action": "loud"}))] == ["action"]
    assert api.call("POST", "/api/v1/sirens/SRN-NONE/commands", "operator", json={"action": "on"}).status_code == 404
    test = api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "operator", json={"action": "test"})
    assert test.status_code == 202, test.get_data(as_text=True)
    body = test.get_json()
    assert (body["action"], body["duration_s"], body["status"], body["attempts"], body["by"].startswith("test operator")
            ) == ("test", 10, "pending", 0, True)
    on = api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "operator", json={"action": "on", "duration_s": 60})
    assert on.status_code == 202 and on.get_json()["duration_s"] == 60
    siren = api.call("GET", "/api/v1/sirens/SRN-WOTU-1", "viewer").get_json()
    assert siren["last_command"]["command_id"] == on.get_json()["command_id"]
    assert siren["override"] == {"action": "on", "level": None, "alert_id": None} and siren["on_until"]
    # A test while it sounds would cut the alarm short.
    busy = api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "operator", json={"action": "test"})
    assert busy.status_code == 409
    assert api.call("POST", "/api/v1/sirens/SRN-WOTU-1/commands", "operator", json={"action": "off"}).status_code == 202
    trail = api.call("GET", "/api/v1/audit?entity=siren&entity_id=SRN-WOTU-1").get_json()["items"]
    assert [(a["action"], a["after"]["action"]) for a in trail] == [("command", "off"), ("command", "on"),
                                                                     ("command", "test")]


def test_closing_an_alert_by_hand_switches_its_sirens_off(api):
    """Spec section 10: closing a source alert by hand switches its sirens off (and its waves' sirens)."""
    import json as json_
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa

    from service.sirens.controller import SirenController
    from service.db.schema import alerts
    from tests.support.ingest import iso, message

    assert api.call("PATCH", "/api/v1/stations/KLN-MANGKUTANA", json={"sirens": [{"id": "SRN-MKT-1", "at": "siaga"}]}
                    ).status_code == 200
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [
        {"id": "SRN-WOTU-W", "at": "siaga", "upstream": True}]}).status_code == 200
    services = api.services
    now = datetime.now(timezone.utc)
    services.ingestor.ingest([message("KLN-MANGKUTANA", {"ts": iso(now - timedelta(minutes=5)),
                                                         "values": {"water_level": 3.2}}, now)])
    published: list[tuple[str, dict]] = []
    controller = SirenController(services, lambda topic, body: published.append(
        (topic.rsplit("/", 2)[1], json_.loads(body))) or True)
    controller.run_once(datetime.now(timezone.utc))
    assert sorted((sid, body["action"]) for sid, body in published) == [("SRN-MKT-1", "on"), ("SRN-WOTU-W", "on")]
    with services.engine.connect() as conn:
        source = conn.execute(sa.select(alerts.c.id).where(alerts.c.station_id == "KLN-MANGKUTANA",
                                                           alerts.c.kind == "water_level")).scalar_one()
    closed = api.call("POST", f"/api/v1/alerts/{source}/close", "operator",
                      json={"reason": "gauge hit by debris", "all_clear": True})
    assert closed.status_code == 200, closed.get_data(as_text=True)
    published.clear()
    controller.run_once(datetime.now(timezone.utc))
    assert sorted((sid, body["action"]) for sid, body in published) == [("SRN-MKT-1", "off"), ("SRN-WOTU-W", "off")]
