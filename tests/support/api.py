"""A real Flask app over a real, migrated and seeded database, with one token per role."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from service.db import schema
from service.http import create_app
from service.tokens import ROLES, create_token
from service.wiring import utc_now
from tests.support.services import make_services


@dataclasses.dataclass
class ApiHarness:
    services: object
    app: object
    client: object
    tokens: dict  # role -> token; plus "revoked"

    def headers(self, role: str | None) -> dict:
        """Authorization header for ``role`` (None: no header)."""
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, method: str, path: str, role: str | None = "admin", **kwargs):
        """Make a request as ``role``."""
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)


def make_harness(database_url: str, seed: str | None = "luwu-timur", *, clock=utc_now, **env: str) -> ApiHarness:
    """Services, app, test client and tokens for every role (and a revoked admin token); ``env``: more settings."""
    services = make_services(database_url, seed=seed, clock=clock, **env)
    app = create_app(services)
    app.testing = True
    tokens = {role: create_token(services.engine, role, f"test {role}")[1] for role in ROLES if role != "gateway"}
    with services.engine.connect() as conn:
        every = [row.id for row in conn.execute(sa.select(schema.stations.c.id))]
    if every:  # a gateway token names its stations (spec section 9): this one may post for every station
        tokens["gateway"] = create_token(services.engine, "gateway", "test-gateway", stations=every)[1]
    revoked_id, tokens["revoked"] = create_token(services.engine, "admin", "test revoked")
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.id == revoked_id)
                     .values(revoked_at=services.clock()))
    return ApiHarness(services=services, app=app, client=app.test_client(), tokens=tokens)


def validation_errors(response) -> list[dict]:
    """The ``errors`` of a 422 problem document (asserting that is what ``response`` is)."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    return response.get_json()["errors"]
