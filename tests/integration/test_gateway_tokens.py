"""Gateway credentials name their stations (spec section 9): over the API, on the command line, on ingest."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.db.schema import dead_letters, readings
from service.tokens import create_token
from tests.support.api import make_harness
from tests.support.ingest import iso

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


def count(api, table) -> int:
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def errors(answer) -> dict:
    assert answer.status_code == 422, answer.get_data(as_text=True)
    return {e["field"]: e["message"] for e in answer.get_json()["errors"]}


def test_a_gateway_token_needs_existing_stations_and_an_mqtt_user_name(api):
    post = lambda body: api.call("POST", "/api/v1/tokens", "admin", json=body)  # noqa: E731
    assert "stations" in errors(post({"role": "gateway", "name": "gw-laskap"}))
    assert "stations" in errors(post({"role": "gateway", "name": "gw-laskap", "stations": []}))
    assert "NOPE" in errors(post({"role": "gateway", "name": "gw-laskap", "stations": ["PKR-LASKAP", "NOPE"]}))["stations"]
    assert "name" in errors(post({"role": "gateway", "name": "gateway PKR-LASKAP", "stations": ["PKR-LASKAP"]}))
    assert "name" in errors(post({"role": "gateway", "name": "x" * 65, "stations": ["PKR-LASKAP"]}))
    assert "stations" in errors(post({"role": "viewer", "name": "reader", "stations": ["PKR-LASKAP"]}))
    made = post({"role": "gateway", "name": "gw-laskap", "stations": ["PKR-LASKAP", "MLL-MALILI", "PKR-LASKAP"]})
    assert made.status_code == 201 and made.get_json()["stations"] == ["PKR-LASKAP", "MLL-MALILI"]
    listed = {t["name"]: t for t in api.call("GET", "/api/v1/tokens?limit=100", "admin").get_json()["items"]}
    assert listed["gw-laskap"]["stations"] == ["PKR-LASKAP", "MLL-MALILI"]
    assert listed["gw-laskap"]["stations_learn_until"] is None
    assert listed["test viewer"]["stations"] is None


def test_a_gateway_token_posting_outside_its_stations_gets_403_and_nothing_is_stored(api):
    token = create_token(api.services.engine, "gateway", "gw-laskap", stations=["PKR-LASKAP"])[1]
    headers = {"Authorization": f"Bearer {token}"}
    ts = iso(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=2))
    own = api.client.post("/api/v1/stations/PKR-LASKAP/readings", headers=headers,
                          json={"ts": ts, "values": {"water_level": 1.0}})
    assert own.status_code == 200
    # Another station's timestamps cannot be pre-claimed, and no dead letter is written either.
    for station in ("KLN-WOTU", "NOPE"):
        other = api.client.post(f"/api/v1/stations/{station}/readings", headers=headers,
                                json={"ts": ts, "values": {"water_level": 0.1}})
        assert other.status_code == 403 and other.content_type == "application/problem+json"
        assert "PKR-LASKAP" in other.get_json()["detail"]
    assert count(api, readings) == 1 and count(api, dead_letters) == 0
    # An admin posting for an unknown station: 404 and a dead letter.
    assert api.call("POST", "/api/v1/stations/NOPE/readings", "admin",
                    json={"ts": ts, "values": {"water_level": 0.1}}).status_code == 404
    assert count(api, dead_letters) == 1


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWS_")}
    env["EWS_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_ews_token_create_names_the_stations_of_a_gateway(api, database_url):
    missing = cli(database_url, "token", "create", "--role", "gateway", "--name", "gw-wotu")
    assert missing.returncode == 2 and "stations" in missing.stderr
    made = cli(database_url, "token", "create", "--role", "gateway", "--name", "gw-wotu",
               "--station", "KLN-WOTU", "--station", "KLN-KALAENA")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("ews_")
    listed = cli(database_url, "token", "list").stdout
    assert "\tgw-wotu\tKLN-WOTU,KLN-KALAENA" in listed
