"""Rules change only as asked (spec section 9): PUT replaces a station's whole rules, PATCH merges into them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.db.schema import audit_log, stations
from tests.support.api import make_harness

STATION = "PKR-LASKAP"  # seed: waspada 1.8, siaga 2.4, awas 3.0
URL = f"/api/v1/stations/{STATION}/rules"
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


def stored(api) -> dict:
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(stations.c.rules).where(stations.c.id == STATION)).scalar_one()


def last_audit(api):
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(audit_log).order_by(audit_log.c.id.desc())).first()


def test_the_issues_partial_put_is_refused_and_changes_nothing(api):
    before = stored(api)
    response = api.call("PUT", URL, json={"water_level": {"awas": 3.3}})
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    fields = [e["field"] for e in response.get_json()["errors"]]
    assert "water_level.waspada" in fields and "water_level.siaga" in fields
    assert stored(api) == before
    assert api.call("GET", URL, role="viewer").get_json()["water_level"]["siaga"] == 2.4


def test_a_put_answers_the_full_rules_it_stores(api):
    body = {"water_level": {"waspada": 1.9, "siaga": 2.5, "awas": 3.3}}
    response = api.call("PUT", URL, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    doc = response.get_json()
    assert doc == stored(api) == api.call("GET", URL, role="viewer").get_json()
    assert doc["water_level"]["clear_margin"] == 0.1 and doc["water_level"]["rise_rate"]["per_hour"] == 0.5
    assert doc["battery"]["low"] == 11.5 and doc["stale_after_s"] == 1800
    assert doc["rainfall"] is None  # a river gauge gets no rain thresholds it did not ask for


def test_a_patch_changes_only_the_named_threshold_and_is_audited(api):
    before = api.call("GET", URL, role="viewer").get_json()
    response = api.call("PATCH", URL, json={"water_level": {"awas": 3.3}}, headers={"Content-Type": MERGE_PATCH})
    assert response.status_code == 200, response.get_data(as_text=True)
    after = response.get_json()
    assert after["water_level"]["awas"] == 3.3
    assert {**after, "water_level": {**after["water_level"], "awas": 3.0}} == before
    assert stored(api) == after
    entry = last_audit(api)
    assert (entry.action, entry.entity, entry.entity_id) == ("update", "rules", STATION)
    assert entry.before == before and entry.after == after


def test_a_patch_is_validated_as_a_whole(api):
    before = stored(api)
    response = api.call("PATCH", URL, json={"water_level": {"siaga": 3.5}}, headers={"Content-Type": MERGE_PATCH})
    assert [e["field"] for e in response.get_json()["errors"]] == ["water_level.awas"]
    null = api.call("PATCH", URL, json={"water_level": {"waspada": None}, "battery": None},
                    headers={"Content-Type": MERGE_PATCH})
    assert null.status_code == 200
    assert null.get_json()["water_level"]["waspada"] is None and null.get_json()["battery"] is None
    assert null.get_json()["water_level"]["siaga"] == before["water_level"]["siaga"]


def test_who_may_change_rules_and_in_what_form(api):
    assert api.call("PATCH", URL, "operator", json={}, headers={"Content-Type": MERGE_PATCH}).status_code == 403
    assert api.call("PATCH", URL, data=b"awas=3", content_type="text/plain").status_code == 415
    assert api.call("PATCH", URL, data=b"[1]", content_type=MERGE_PATCH).status_code == 422
    assert api.call("PATCH", "/api/v1/stations/NOPE/rules", json={}, headers={"Content-Type": MERGE_PATCH}).status_code == 404
