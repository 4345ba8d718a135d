"""Role matrix: every staff route with no token, a bad token, a revoked token and each role."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from service.db import schema
from tests.support.api import make_harness

READING = {"ts": "2026-01-01T00:00:00Z", "values": {"water_level": 1.0}}
NEW_STATION = {"id": "NEW-1", "name": "Pos Baru", "metrics": ["water_level"], "kecamatan": "Malili"}

# (method, path, body, the least role that may call it)
ROUTES = [
    ("GET", "/api/v1/stations", None, "viewer"),
    ("POST", "/api/v1/stations", NEW_STATION, "admin"),
    ("GET", "/api/v1/stations/PKR-LASKAP", None, "viewer"),
    ("PATCH", "/api/v1/stations/PKR-LASKAP", {"name": "Pos TMA Laskap"}, "admin"),
    ("DELETE", "/api/v1/stations/MLL-MALILI", None, "admin"),
    ("GET", "/api/v1/stations/PKR-LASKAP/readings", None, "viewer"),
    ("POST", "/api/v1/stations/PKR-LASKAP/readings", READING, "gateway"),
    ("GET", "/api/v1/dead-letters", None, "viewer"),
    ("GET", "/api/v1/tokens", None, "admin"),
    ("POST", "/api/v1/tokens", {"role": "viewer", "name": "another"}, "admin"),
    ("DELETE", "/api/v1/tokens/{victim}", None, "admin"),
    ("GET", "/api/v1/audit", None, "admin"),
]
ALLOWED = {
    "viewer": {"viewer", "operator", "admin"},
    "operator": {"operator", "admin"},
    "admin": {"admin"},
    "gateway": {"gateway", "admin"},
}
CALLERS = ["viewer", "operator", "admin", "gateway"]


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def _body_kwargs(body):
    return {} if body is None else {"json": body}


def test_role_matrix(api):
    from service.tokens import create_token

    victim, _ = create_token(api.services.engine, "viewer", "to be revoked")
    for method, path, body, least in ROUTES:
        path = path.format(victim=victim)
        for caller in [None, "revoked", "bogus"] + CALLERS:
            if caller == "bogus":
                response = api.client.open(path, method=method, headers={"Authorization": "Bearer nope"},
                                           **_body_kwargs(body))
            else:
                response = api.call(method, path, caller, **_body_kwargs(body))
            where = f"{method} {path} as {caller}: {response.status_code} {response.get_data(as_text=True)[:200]}"
            if caller in (None, "revoked", "bogus"):
                assert response.status_code == 401, where
                assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
            elif caller not in ALLOWED[least]:
                assert response.status_code == 403, where
            else:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, where
            if response.status_code >= 400:
                assert response.content_type == "application/problem+json", where
                problem = response.get_json()
                assert {"type", "title", "status", "detail"} <= problem.keys(), where
                assert problem["status"] == response.status_code


def test_malformed_authorization_headers_get_401(api):
    for header in ["Basic abc", "Bearer", "Bearer ", "bearer  ", "Token x", "Bearer \u00e9\u00e9"]:
        response = api.client.get("/api/v1/stations", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.content_type == "application/problem+json"


def test_last_used_is_recorded_at_most_once_a_minute(api):
    t = schema.api_tokens
    with api.services.engine.connect() as conn:
        before = conn.execute(sa.select(t.c.last_used_at).where(t.c.name == "test viewer")).scalar_one()
    assert before is None
    assert api.call("GET", "/api/v1/stations", "viewer").status_code == 200
    with api.services.engine.connect() as conn:
        first = conn.execute(sa.select(t.c.last_used_at).where(t.c.name == "test viewer")).scalar_one()
    assert first is not None
    assert api.call("GET", "/api/v1/stations", "viewer").status_code == 200
    with api.services.engine.connect() as conn:
        second = conn.execute(sa.select(t.c.last_used_at).where(t.c.name == "test viewer")).scalar_one()
    assert second == first


def test_public_endpoints_need_no_token(api):
    for path in ["/healthz", "/metrics", "/cap/feed.atom", "/api/v1/openapi.json", "/api/v1/docs"]:
        assert api.client.get(path).status_code == 200, path
    assert api.client.get("/readyz").status_code == 503  # no MQTT in this test


def test_token_lifecycle_create_list_revoke(api):
    created = api.call("POST", "/api/v1/tokens", json={"role": "operator", "name": "piket malam"})
    assert created.status_code == 201
    token = created.get_json()["token"]
    assert token.startswith(created.get_json()["prefix"])
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/stations", headers=headers).status_code == 200
    listed = api.call("GET", "/api/v1/tokens").get_json()["items"]
    assert all("token" not in item for item in listed)
    assert any(item["name"] == "piket malam" for item in listed)
    token_id = created.get_json()["id"]
    assert api.call("DELETE", f"/api/v1/tokens/{token_id}").status_code == 204
    assert api.client.get("/api/v1/stations", headers=headers).status_code == 401
    assert api.call("DELETE", "/api/v1/tokens/999999").status_code == 404
    with api.services.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.api_tokens.c.token_hash).where(schema.api_tokens.c.id == token_id)).scalar_one()
    assert token not in stored and len(stored) == 64
    audit = api.call("GET", "/api/v1/audit?entity=token").get_json()["items"]
    assert [a["action"] for a in audit][:2] == ["revoke", "create"]
    assert all(token not in str(a) for a in audit)


def test_cli_token_create_prints_a_working_token(api, capsys, monkeypatch):
    from service import tokens
    from service.cli import environment_database

    url = api.services.settings.database_url
    monkeypatch.setenv("EWS_DATABASE_URL", url)
    parser = __import__("argparse").ArgumentParser()
    tokens.configure_parser(parser)
    args = parser.parse_args(["create", "--role", "viewer", "--name", "cli test"])
    args.open_database = environment_database  # as service.cli hands it to every command
    assert tokens.command(args) == 0
    printed = capsys.readouterr().out.strip()
    assert api.client.get("/api/v1/stations", headers={"Authorization": f"Bearer {printed}"}).status_code == 200


def test_a_token_revoked_elsewhere_stops_working_within_the_recheck_bound(api):
    """Checked tokens are held for TOKEN_RECHECK_SECONDS; a revocation by another instance (or the CLI) is seen after it."""
    import time

    from service.http.auth import TOKEN_RECHECK_SECONDS
    from service.tokens import create_token

    token_id, token = create_token(api.services.engine, "viewer", "revoked by another instance")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/stations", headers=headers).status_code == 200
    with api.services.engine.begin() as conn:  # as `ews token revoke` in another process does it
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.id == token_id)
                     .values(revoked_at=api.services.clock()))
    time.sleep(TOKEN_RECHECK_SECONDS)
    refused = api.client.get("/api/v1/stations", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["detail"] == "The token has been revoked."


def test_a_change_always_reads_the_token_row_so_a_downgrade_elsewhere_counts_at_once(api):
    """A recent check serves reads only: an admin token made a viewer's by another instance cannot change anything."""
    from service.tokens import create_token

    api.app.extensions["ews_known_tokens"].recheck_s = 60  # the check is held for the whole test
    token_id, token = create_token(api.services.engine, "admin", "downgraded by another instance")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/stations", headers=headers).status_code == 200
    with api.services.engine.begin() as conn:  # as an admin's change in another process does it
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.id == token_id).values(role="viewer"))
    assert api.client.post("/api/v1/stations", json=NEW_STATION, headers=headers).status_code == 403
    with api.services.engine.begin() as conn:
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.id == token_id)
                     .values(revoked_at=api.services.clock()))
    assert api.client.post("/api/v1/stations", json=NEW_STATION, headers=headers).status_code == 401
    with api.services.engine.connect() as conn:
        assert conn.execute(sa.select(schema.stations.c.id).where(schema.stations.c.id == "NEW-1")).first() is None


def test_a_token_row_read_while_tokens_were_forgotten_is_not_kept():
    """A row read before a revocation committed here may be the old one: it must not be trusted afterwards."""
    from service.http.auth import Caller, KnownTokens

    known = KnownTokens(recheck_s=60)
    caller = Caller(token_id=7, name="piket", role="viewer")
    reading = known.reading()
    known.forget()  # this process revoked a token meanwhile
    known.keep("hash-7", caller, reading)
    assert known.caller("hash-7") is None
    known.keep("hash-7", caller, known.reading())
    assert known.caller("hash-7") == caller


def test_the_station_list_answers_304_to_a_caller_holding_it(api):
    first = api.call("GET", "/api/v1/stations?limit=5", "viewer")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"')
    again = api.call("GET", "/api/v1/stations?limit=5", "viewer", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and again.get_data() == b""
    other = api.call("GET", "/api/v1/stations?limit=5", "viewer", headers={"If-None-Match": '"another"'})
    assert other.status_code == 200 and other.get_json() == first.get_json()
    # The token is checked before the answer: no token, no 304.
    assert api.client.get("/api/v1/stations?limit=5", headers={"If-None-Match": etag}).status_code == 401


def test_a_held_station_list_is_served_beneath_flask_only_to_a_checked_viewer(api, monkeypatch):
    """service.http.answers.HeldBeneath: the same bytes and headers as Flask's answer; every refusal still Flask's."""
    import flask

    api.app.extensions["ews_station_list_answers"].check_every = 60  # held for the whole test
    api.app.extensions["ews_known_tokens"].recheck_s = 60
    path = "/api/v1/stations?limit=5"
    built = api.call("GET", path, "viewer")
    through_flask = []
    dispatch = flask.Flask.full_dispatch_request
    monkeypatch.setattr(flask.Flask, "full_dispatch_request", lambda self: through_flask.append(1) or dispatch(self))
    held = api.call("GET", path, "viewer")
    assert through_flask == [] and held.status_code == built.status_code == 200
    assert held.get_data() == built.get_data() and sorted(held.headers.items()) == sorted(built.headers.items())
    assert api.call("GET", path, "gateway").status_code == 403
    assert api.client.get(path).status_code == 401
    assert api.client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.call("GET", path, "revoked").status_code == 401
    assert len(through_flask) == 4
