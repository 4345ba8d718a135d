"""API tokens: ``ews token create --role ROLE --name NAME`` prints a new token once.

Only the sha256 of a token is stored (table api_tokens), with its first characters as
``prefix`` so people can recognise it in a list. A gateway token names the stations it may post
readings for (``--station``, spec section 9), and its name is its MQTT user name
(``ews broker acl``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
import sys
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from alerts.errors import TokenError
from service.db import dialect, schema

log = logging.getLogger(__name__)

ROLES = ("viewer", "operator", "admin", "gateway")
# Which token roles satisfy a required role (service/http/auth.py checks it).
SATISFIED_BY = {
    "viewer": {"viewer", "operator", "admin"},
    "operator": {"operator", "admin"},
    "admin": {"admin"},
    "gateway": {"gateway", "admin"},
}
TOKEN_PREFIX = "ews_"


def hash_token(token: str) -> str:
    """The sha256 hex digest stored for a token (only it is kept)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token: ``ews_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


GATEWAY_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a gateway token's name is its MQTT user name
# A gateway token of the first release (no stations) learns the stations it posts for this long
# after the upgrade (migration 0008), then may post only for those.
LEGACY_LEARNING = timedelta(days=7)


def _checked_request(conn, role: str, name: str, stations) -> tuple[str, list[str] | None]:
    """The name and station list of a new token, or a ``TokenError`` naming the field."""
    if role not in ROLES:
        raise TokenError("role", f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise TokenError("name", "a token needs a name of 1 to 120 characters")
    if role != "gateway":
        if stations:
            raise TokenError("stations", "only gateway tokens name stations")
        return name, None
    if not GATEWAY_NAME_RE.match(name):
        raise TokenError("name", "a gateway token's name is its MQTT user name: 1-64 letters, digits, '-' or '_'")
    wanted = list(dict.fromkeys(stations or []))
    if not wanted:
        raise TokenError("stations", "a gateway token names the stations it may post for (at least one)")
    st = schema.stations
    known = set(conn.execute(sa.select(st.c.id).where(st.c.id.in_(wanted))).scalars())
    unknown = [station for station in wanted if station not in known]
    if unknown:
        raise TokenError("stations", f"no station {', '.join(map(repr, unknown[:5]))}; register it first")
    return name, wanted


def create_token(engine, role: str, name: str, created_by: str | None = None, *, stations=None,
                 now: datetime | None = None):
    """Store a new token for ``role``/``name`` (gateway: and its ``stations``); return ``(id, token)``.

    The token itself is not kept. Raises ``TokenError`` naming the field that is wrong.
    """
    token = new_token()
    with engine.begin() as conn:
        name, stations = _checked_request(conn, role, name, stations)
        token_id = conn.execute(
            sa.insert(schema.api_tokens)
            .values(
                name=name,
                role=role,
                token_hash=hash_token(token),
                prefix=token[:12],
                created_at=now or datetime.now(timezone.utc),
                created_by=created_by,
                stations=stations,
            )
            .returning(schema.api_tokens.c.id)
        ).scalar_one()
    return token_id, token


# -- gateway tokens: who may post for which station -------------------------------------------


@dataclasses.dataclass(frozen=True)
class GatewayScope:
    """The stations a gateway token may post readings for."""

    token_id: int
    name: str
    stations: tuple[str, ...]
    learn_until: datetime | None = None  # a first-release token still learning its stations

    def learning(self, now: datetime) -> bool:
        """True while a first-release token may still post for any station (and learns it)."""
        return self.learn_until is not None and now < self.learn_until


def gateway_decision(scope: GatewayScope, station_id: str, station_known: bool, now: datetime) -> str:
    """``allowed``, ``learn`` (allowed, and added to the token's list) or ``forbidden``."""
    if station_id in scope.stations:
        return "allowed"
    if scope.learning(now):
        return "learn" if station_known else "allowed"
    return "forbidden"


def forbidden_detail(scope: GatewayScope, station_id: str) -> str:
    """Why a gateway token may not post for ``station_id``, and what to do."""
    if scope.learn_until is not None and not scope.stations:
        return (f"Gateway token #{scope.token_id} was issued before tokens named their stations and learned none; "
                f"re-issue it: ews token create --role gateway --name {scope.name} --station {station_id[:64]}.")
    allowed = ", ".join(scope.stations) or "no station"
    return f"This gateway token may post readings for {allowed}; not for {station_id[:64]!r}."


def learn_station(engine, scope: GatewayScope, station_id: str) -> None:
    """Add ``station_id`` to a first-release token's list (while it learns)."""
    t = schema.api_tokens
    with engine.begin() as conn:
        query = dialect.locked(sa.select(t.c.stations).where(t.c.id == scope.token_id), conn)
        current = list(conn.execute(query).scalar_one() or [])
        if station_id not in current:
            conn.execute(sa.update(t).where(t.c.id == scope.token_id).values(stations=[*current, station_id]))
    log.warning("gateway token #%s %r (issued before tokens named stations) posted for %s: added to its stations "
                "until %s", scope.token_id, scope.name, station_id, scope.learn_until.isoformat())


def warn_legacy_gateway_tokens(engine, now: datetime) -> int:
    """Log one warning per active first-release gateway token (at start); return how many there are."""
    t = schema.api_tokens
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.role == "gateway", t.c.revoked_at.is_(None),
                                               t.c.stations_learn_until.is_not(None)).order_by(t.c.id)).all()
    for row in rows:
        stations = ", ".join(row.stations or []) or "none yet"
        when = ("until " if now < row.stations_learn_until else "it stopped learning at ") + \
            row.stations_learn_until.isoformat()
        log.warning("gateway token #%s %r was issued before tokens named their stations: it learns the stations it "
                    "posts for (%s), so far: %s. Re-issue it with its stations: ews token create --role gateway "
                    "--name NAME --station ID [--station ID ...], then ews token revoke %s (docs/api.md)",
                    row.id, row.name, when, stations, row.id)
    return len(rows)


def configure_parser(parser) -> None:
    """Add ``create``, ``list`` and ``revoke`` to ``ews token``."""
    sub = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True,
                        help="who or what uses it, e.g. 'Kalak BPBD'; a gateway's is its MQTT user name, e.g. gw-laskap")
    create.add_argument("--station", action="append", default=[], metavar="ID", dest="stations",
                        help="gateway tokens: a station it may post for (repeat for several; at least one)")
    sub.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)


def command(args) -> int:
    """Run ``ews token create|list|revoke`` on the database ``args.open_database()`` opens (service/cli.py)."""
    engine = args.open_database()
    try:
        if args.token_command == "create":
            # A TokenError is printed as one line by service.cli.
            token_id, token = create_token(engine, args.role, args.name, created_by="cli", stations=args.stations)
            print(token)
            print(f"token #{token_id} ({args.role}, {args.name!r}); it is shown only now, keep it safe",
                  file=sys.stderr)
            return 0
        t = schema.api_tokens
        if args.token_command == "list":
            with engine.connect() as conn:
                for row in conn.execute(sa.select(t).order_by(t.c.id)):
                    state = "revoked" if row.revoked_at else "active"
                    stations = "" if row.stations is None else "\t" + (",".join(row.stations) or "-")
                    if row.stations_learn_until is not None:
                        stations += f" (issued before stations; learns until {row.stations_learn_until:%Y-%m-%d %H:%M} UTC)"
                    print(f"{row.id}\t{row.prefix}...\t{row.role}\t{state}\t{row.name}{stations}")
            return 0
        if args.token_command == "revoke":
            with engine.begin() as conn:
                done = conn.execute(
                    sa.update(t).where(t.c.id == args.id, t.c.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(timezone.utc))
                ).rowcount
            if not done:
                print(f"ews token revoke: no active token #{args.id}", file=sys.stderr)
                return 1
            print(f"token #{args.id} revoked", file=sys.stderr)
            return 0
    finally:
        engine.dispose()
    return 2
