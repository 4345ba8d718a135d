"""Bearer-token authentication and role checks for the staff API (spec section 2).

Roles (``service.tokens.ROLES``): ``viewer`` < ``operator`` < ``admin``; ``gateway`` may only
post readings (and ``admin`` may do everything a gateway may). Use ``@require("operator")`` on a view; read
the caller with ``current_caller()`` / ``current_actor()`` for the audit trail.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, g, request

from service.db import schema
from service.http.errors import Problem
from service.tokens import ROLES, SATISFIED_BY, hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
# A checked token is trusted this long, for reads only, before its row is read again: a token revoked by
# another instance or by `ews token revoke` stops reading within it (one revoked through this process's
# API, at once: see forget_tokens); a change always reads the row. A row per request was a third of a
# station-list request.
TOKEN_RECHECK_SECONDS = 1.0
READ_METHODS = frozenset({"GET", "HEAD"})  # the requests a recent check may serve (see authenticate)
MAX_KNOWN_TOKENS = 1024  # distinct tokens held; more start the collection afresh
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


class KnownTokens:
    """Callers of the valid tokens checked in the last ``TOKEN_RECHECK_SECONDS``, by token hash (never the token)."""

    def __init__(self, recheck_s: float = TOKEN_RECHECK_SECONDS) -> None:
        self.recheck_s = recheck_s
        self._held: dict[str, tuple[float, Caller]] = {}  # token hash: (trusted until, caller)
        self._generation = 0  # moved by forget(): a row read before it is not kept
        self._lock = threading.Lock()

    def caller(self, token_hash: str) -> Caller | None:
        """The caller of a token checked recently enough, or None (read its row)."""
        held = self._held.get(token_hash)
        if held is None or held[0] <= time.monotonic():
            return None
        return held[1]

    def reading(self) -> tuple[float, int]:
        """Taken before a token's row is read: when, and which generation (see ``keep``)."""
        return time.monotonic(), self._generation

    def keep(self, token_hash: str, caller: Caller, reading: tuple[float, int]) -> None:
        """Trust ``caller`` for ``recheck_s`` from ``reading``, unless tokens were forgotten meanwhile."""
        read_at, generation = reading
        with self._lock:
            if generation != self._generation:
                return  # a revocation committed while this row was read: it may be the old row
            if len(self._held) >= MAX_KNOWN_TOKENS and token_hash not in self._held:
                self._held = {}
            self._held[token_hash] = (read_at + self.recheck_s, caller)

    def forget(self) -> None:
        """Drop every held caller (a token was revoked): the next request of each reads its row."""
        with self._lock:
            self._generation += 1
            self._held = {}


def forget_tokens() -> None:
    """Call after committing a token's revocation: this process then refuses it from the next request on."""
    current_app.extensions["ews_known_tokens"].forget()


def _unauthorized(detail: str, error: str = "invalid_token") -> Problem:
    challenge = _CHALLENGE if error == "" else f'{_CHALLENGE}, error="{error}"'
    return Problem(401, detail, headers={"WWW-Authenticate": challenge})


def authenticate() -> Caller:
    """Check the request's bearer token (once per request); raise a 401 problem when it is missing or bad."""
    if "ews_caller" in g:
        return g.ews_caller
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("This endpoint needs an 'Authorization: Bearer <token>' header.", "")
    token = bearer_token(header)
    if token is None:
        raise _unauthorized("The Authorization header must be 'Bearer <token>'.", "invalid_request")
    token_hash = hash_token(token)
    known = current_app.extensions["ews_known_tokens"]
    # Only a read may trust a recent check: a change (anything but GET/HEAD) always reads the token's row, so a
    # token revoked or downgraded a moment ago never changes what residents are told or what the system holds.
    caller = known.caller(token_hash) if request.method in READ_METHODS else None
    if caller is None:
        reading = known.reading()
        caller = _read_token(current_app.extensions["ews"], token_hash)
        known.keep(token_hash, caller, reading)
    g.ews_caller = caller
    return caller


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when it is not one."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def held_check_allows(known: KnownTokens, header: str, roles: tuple[str, ...]) -> bool:
    """True when ``header`` carries a token checked within ``TOKEN_RECHECK_SECONDS`` holding one of ``roles``.

    No query: False means only "ask authenticate()" (which answers 401 or 403, or reads the row).
    """
    token = bearer_token(header)
    if token is None:
        return False
    caller = known.caller(hash_token(token))
    return caller is not None and caller.role in _allowed(roles)


def _read_token(services, token_hash: str) -> Caller:
    """The caller of a token from its row (keeping ``last_used_at`` to the minute); a 401 problem if unknown or revoked."""
    now = services.clock()
    t = schema.api_tokens
    with services.engine.connect() as conn:
        row = conn.execute(_token_query(), {"token_hash": token_hash}).first()
    if row is None:
        raise _unauthorized("The token is not known.")
    if row.revoked_at is not None:
        raise _unauthorized("The token has been revoked.")
    # A write per request would be wasteful: last_used_at is kept to the minute.
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        with services.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == row.id).values(last_used_at=now))
    return Caller(token_id=row.id, name=row.name, role=row.role,
                  stations=None if row.stations is None else tuple(row.stations),
                  stations_learn_until=row.stations_learn_until)


@functools.lru_cache(maxsize=1)
def _token_query():
    """The token look-up every request makes, built once (building it cost more than running it)."""
    t = schema.api_tokens
    return sa.select(t.c.id, t.c.name, t.c.role, t.c.revoked_at, t.c.last_used_at, t.c.stations,
                     t.c.stations_learn_until).where(t.c.token_hash == sa.bindparam("token_hash"))


def check_role(caller: Caller, roles: tuple[str, ...]) -> None:
    """Raise a 403 problem unless ``caller`` holds one of ``roles`` (or a role above it)."""
    if caller.role not in _allowed(roles):
        raise Problem(403, f"This needs the {' or '.join(roles)} role; the token has {caller.role}.")


@functools.lru_cache(maxsize=None)
def _allowed(roles: tuple[str, ...]) -> frozenset[str]:
    """The token roles that satisfy any of ``roles``."""
    return frozenset().union(*(SATISFIED_BY[r] for r in roles))


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
