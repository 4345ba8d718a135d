"""``/api/v1/tokens`` (admin): create (the token is shown once), list, revoke."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from service import audit
from service.db import schema
from service.http import changing, services
from service.http.auth import current_actor, forget_tokens
from service.http.errors import Problem, field_error
from service.http.pagination import PageArgs
from service.http.routes import operation, paged_list
from service.http.schemas import Strict, Text, UTCDateTime
from service.tokens import ROLES, TokenError, create_token

blp = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens", description="API tokens (admin)")


class TokenSchema(ma.Schema):
    """A token as listed: never the token itself."""

    id = ma.fields.Integer()
    name = ma.fields.String()
    role = ma.fields.String()
    prefix = ma.fields.String(metadata={"description": "first characters of the token, to recognise it"})
    created_at = UTCDateTime()
    created_by = ma.fields.String(allow_none=True)
    revoked_at = UTCDateTime(allow_none=True)
    last_used_at = UTCDateTime(allow_none=True, metadata={"description": "to the minute"})
    stations = ma.fields.List(ma.fields.String(), allow_none=True,
                              metadata={"description": "gateway tokens: the stations it may post readings for; "
                                                       "null for other roles"})
    stations_learn_until = UTCDateTime(allow_none=True, metadata={
        "description": "a gateway token issued before tokens named stations: until then it may post for any "
                       "registered station and learns each one it posts for (docs/api.md)"})


class NewTokenSchema(TokenSchema):
    """A just-created token: ``token`` is shown this once."""

    token = ma.fields.String()


class TokenIn(Strict):
    """What a new token is for."""

    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    name = Text(required=True, min_length=1, max_length=120,
                metadata={"description": "gateway: its MQTT user name, ^[A-Za-z0-9_-]{1,64}$"})
    stations = ma.fields.List(Text(min_length=1, max_length=64), validate=ma.validate.Length(max=1000),
                              metadata={"description": "gateway tokens (required, at least one): the station ids "
                                                       "it may post readings for"})


def token_json(row) -> dict:
    """The public view of an api_tokens row."""
    m = row._mapping
    return {k: m[k] for k in ("id", "name", "role", "prefix", "created_at", "created_by", "revoked_at", "last_used_at",
                              "stations", "stations_learn_until")}


@blp.route("")
class Tokens(MethodView):
    @paged_list(blp, "admin", PageArgs, TokenSchema, order=(schema.api_tokens.c.id,), to_json=token_json)
    def get(self, args):
        """List tokens, newest first."""
        return sa.select(schema.api_tokens)

    @operation(blp, "admin", 201, NewTokenSchema, body=TokenIn)
    def post(self, data):
        """Create a token; the answer holds the token, which is not shown again."""
        svc = services()
        name = data["name"].strip()
        if not name:
            raise Problem(422, "name: must not be blank", errors=[{"field": "name", "message": "must not be blank"}])
        now = svc.clock()
        try:
            token_id, token = create_token(svc.engine, data["role"], name, created_by=current_actor(),
                                           stations=data.get("stations"), now=now)
        except TokenError as exc:
            raise field_error(exc.field, exc.message) from None
        t = schema.api_tokens
        with svc.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == token_id)).first()
            audit.record(conn, current_actor(), "create", "token", token_id, None, token_json(row), now)
        return {**token_json(row), "token": token}


@blp.route("/<int(max=2147483647):token_id>")  # api_tokens.id is a 32-bit column
class TokenView(MethodView):
    @operation(blp, "admin", 204)
    def delete(self, token_id):
        """Revoke a token (it stays listed, with revoked_at)."""
        t = schema.api_tokens
        with changing() as (conn, now):
            row = conn.execute(sa.select(t).where(t.c.id == token_id)).first()
            if row is None:
                raise Problem(404, f"No token #{token_id}.")
            if row.revoked_at is None:
                conn.execute(sa.update(t).where(t.c.id == token_id).values(revoked_at=now))
                after = {**token_json(row), "revoked_at": now}
                audit.record(conn, current_actor(), "revoke", "token", token_id, token_json(row), after, now)
        forget_tokens()  # committed: refused from the next request on
        return None
