"""Bearer-token authentication and role checks for the staff API (spec section 2).

Roles (``service.tokens.ROLES``): ``viewer`` < ``operator`` < ``admin``; ``gateway`` may only
post readings (and ``admin`` may do everything a gateway may). Use ``@require("operator")`` on a view; read
the caller with ``current_caller()`` / ``current_actor()`` for the audit trail.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, g, request

from service.db import schema
from service.http.errors import Problem
from service.tokens import ROLES, SATISFIED_BY, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
_CHALLENGE = 'Bearer realm="ews"'


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who made the request: the token's id, name and role."""

    token_id: int
    name: str
    role: str
    stations: tuple[str, ...] | None = None  # gateway tokens: the stations it may post for
    stations_learn_until: datetime | None = None  # a first-release gateway token still learning them

    @property
    def actor(self) -> str:
        """How the caller is named in the audit trail: ``name#id``."""
        return f"{self.name}#{self.token_id}"[:120]


def _unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    challenge = _CHALLENGE if error == "" else f'{_CHALLENGE}, error="{error}"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def authenticate() -> Caller:
    """Check the request's bearer token (once per request); raise a 401 problem when it is missing or bad."""
    if "ews_caller" in g:
        return g.ews_caller
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise _unauthorized("This endpoint needs an 'Authorization: Bearer <token>' header.", "")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("The Authorization header must be 'Bearer <token>'.", "invalid_request")
    services = current_app.extensions["ews"]
    now = services.clock()
    t = schema.api_tokens
    with services.engine.connect() as conn:
        row = conn.execute(_token_query(), {"token_hash": hash_token(token)}).first()
    if row is None:
        raise _unauthorized("The token is not known.")
    if row.revoked_at is not None:
        raise _unauthorized("The token has been revoked.")
    # A write per request would be wasteful: last_used_at is kept to the minute.
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        with services.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == row.id).values(last_used_at=now))
    g.ews_caller = Caller(token_id=row.id, name=row.name, role=row.role,
                          stations=None if row.stations is None else tuple(row.stations),
                          stations_learn_until=row.stations_learn_until)
    return g.ews_caller


@functools.lru_cache(maxsize=1)
def _token_query():
    """The token look-up every request makes, built once (building it cost more than running it)."""
    t = schema.api_tokens
    return sa.select(t.c.id, t.c.name, t.c.role, t.c.revoked_at, t.c.last_used_at, t.c.stations,
                     t.c.stations_learn_until).where(t.c.token_hash == sa.bindparam("token_hash"))


def check_role(caller: Caller, roles: tuple[str, ...]) -> None:
    """Raise a 403 problem unless ``caller`` holds one of ``roles`` (or a role above it)."""
    allowed = set().union(*(SATISFIED_BY[r] for r in roles))
    if caller.role not in allowed:
        raise Problem(403, f"This needs the {' or '.join(roles)} role; the token has {caller.role}.")


def require(*roles: str):
    """Decorator: the view needs a valid bearer token holding one of ``roles``.

    Place it *outermost* (above ``@blp.arguments``/``@blp.response``) so that a caller without
    a token gets 401/403 before the request body is validated.
    """
    unknown = [r for r in roles if r not in SATISFIED_BY]
    if not roles or unknown:
        raise ValueError(f"require() needs roles from {ROLES}, got {roles}")

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            check_role(authenticate(), roles)
            return view(*args, **kwargs)

        # Document the role and the 401/403 answers in the OpenAPI document.
        apidoc = dict(getattr(view, "_apidoc", {}))
        manual = dict(apidoc.get("manual_doc", {}))
        manual["security"] = [{"bearerAuth": []}]
        responses = dict(manual.get("responses", {}))
        responses.setdefault(401, "UNAUTHORIZED")
        responses.setdefault(403, "FORBIDDEN")
        manual["responses"] = responses
        note = f"Roles: {', '.join(sorted(set().union(*(SATISFIED_BY[r] for r in roles))))}."
        manual["description"] = (manual.get("description", "") + "\n\n" + note).strip()
        apidoc["manual_doc"] = manual
        wrapper._apidoc = apidoc
        wrapper.ews_roles = roles
        return wrapper

    return decorator


def current_caller() -> Caller | None:
    """The authenticated caller of this request, or None on a public route."""
    return g.get("ews_caller")


def current_actor() -> str:
    """The audit name of the caller (``name#id``), or ``anonymous``."""
    caller = current_caller()
    return caller.actor if caller else "anonymous"
