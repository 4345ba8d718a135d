"""Sirens through the API (spec section 12): a station's ``sirens`` (validated, 422 naming the field)."""

from __future__ import annotations

import pytest

from tests.support.api import make_harness


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def errors(response) -> list[dict]:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    return response.get_json()["errors"]


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
    assert field in [e["field"] for e in errors(api.call("PATCH", "/api/v1/stations/KLN-WOTU",
                                                         json={"sirens": sirens}))]


def test_a_siren_belongs_to_one_station(api):
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [{"id": "SRN-1"}]}).status_code == 200
    [error] = errors(api.call("PATCH", "/api/v1/stations/MLL-MALILI", json={"sirens": [{"id": "SRN-1"}]}))
    assert error == {"field": "sirens.0.id", "message": "'SRN-1' is already a siren of station KLN-WOTU"}
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", json={"sirens": [{"id": "SRN-1", "at": "siaga"}]}
                    ).status_code == 200  # its own station may change it
    assert api.call("PATCH", "/api/v1/stations/KLN-WOTU", "operator", json={"sirens": []}).status_code == 403
