"""The river network in the station registry (spec section 11): targets exist, links form no cycle."""

from __future__ import annotations

import pytest

from tests.support.api import make_harness, validation_errors

NEW = {"id": "TST-HULU", "name": "Pos Uji Hulu", "river": "Sungai Kalaena", "kecamatan": "Mangkutana",
       "metrics": ["water_level"], "rules": {"water_level": {"waspada": 2.5, "siaga": 3.0, "awas": 3.5}}}


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def test_a_cycle_in_downstream_is_422_naming_it_and_nothing_changes(api):
    # The seed's Kalaena runs Mangkutana -> Kalaena -> Wotu; Wotu flowing back to Mangkutana closes a loop.
    found = validation_errors(api.call("PATCH", "/api/v1/stations/KLN-WOTU",
                            json={"downstream": [{"station_id": "KLN-MANGKUTANA", "travel_s": 600}]}))
    assert [e["field"] for e in found] == ["downstream"]
    assert "KLN-WOTU" in found[0]["message"] and "cycle" in found[0]["message"]
    assert api.call("GET", "/api/v1/stations/KLN-WOTU").get_json()["downstream"] == []
    # A new station closing a loop through the registry is refused the same way.
    loop = {**NEW, "downstream": [{"station_id": "KLN-MANGKUTANA", "travel_s": 600}]}
    assert api.call("POST", "/api/v1/stations", json=loop).status_code == 201
    found = validation_errors(api.call("PATCH", "/api/v1/stations/KLN-WOTU",
                            json={"downstream": [{"station_id": "TST-HULU", "travel_s": 60}]}))
    assert [e["field"] for e in found] == ["downstream"]


def test_a_target_that_does_not_exist_is_422_naming_the_link(api):
    body = {**NEW, "downstream": [{"station_id": "KLN-KALAENA", "travel_s": 60},
                                  {"station_id": "NOWHERE", "travel_s": 60}]}
    found = validation_errors(api.call("POST", "/api/v1/stations", json=body))
    assert [e["field"] for e in found] == ["downstream.1.station_id"] and "NOWHERE" in found[0]["message"]
    assert api.call("GET", "/api/v1/stations/TST-HULU").status_code == 404


def test_a_valid_link_is_kept_and_a_linked_target_cannot_be_removed(api):
    body = {**NEW, "downstream": [{"station_id": "KLN-MANGKUTANA", "travel_s": 3600}]}
    assert api.call("POST", "/api/v1/stations", json=body).status_code == 201
    patched = api.call("PATCH", "/api/v1/stations/TST-HULU", json={"downstream": [
        {"station_id": "KLN-MANGKUTANA", "travel_s": 1800}, {"station_id": "KLN-WOTU", "travel_s": 9000}]})
    assert patched.status_code == 200, patched.get_data(as_text=True)
    assert patched.get_json()["downstream"][0] == {"station_id": "KLN-MANGKUTANA", "travel_s": 1800}
    refused = api.call("DELETE", "/api/v1/stations/KLN-WOTU")
    assert refused.status_code == 409 and "KLN-KALAENA" in refused.get_json()["detail"]
