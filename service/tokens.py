"""API tokens: ``ews token create --role ROLE --name NAME`` prints a new token once.

Only the sha256 of a token is stored (table api_tokens), with its first characters as
``prefix`` so people can recognise it in a list.
"""

from __future__ import annotations

import secrets
import sys
from datetime import datetime, timezone

import sqlalchemy as sa

from service.db import schema

ROLES = ("viewer", "operator", "admin", "gateway")
TOKEN_PREFIX = "ews_"


def new_token() -> str:
    """A fresh random token: ``ews_`` and 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(engine, role: str, name: str, created_by: str | None = None, *, now: datetime | None = None):
    """Store a new token for ``role``/``name``; return ``(id, token)`` - the token is not kept."""
    from service.http.auth import hash_token

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ValueError("a token needs a name of 1 to 120 characters")
    token = new_token()
    with engine.begin() as conn:
        token_id = conn.execute(
            sa.insert(schema.api_tokens)
            .values(
                name=name,
                role=role,
                token_hash=hash_token(token),
                prefix=token[:12],
                created_at=now or datetime.now(timezone.utc),
                created_by=created_by,
            )
            .returning(schema.api_tokens.c.id)
        ).scalar_one()
    return token_id, token


def configure_parser(parser) -> None:
    """Add ``create``, ``list`` and ``revoke`` to ``ews token``."""
    sub = parser.add_subparsers(dest="token_command", metavar="ACTION")
    sub.required = True
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what uses it, e.g. 'gateway PKR-LASKAP'")
    sub.add_parser("list", help="list tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)


def _engine():
    import os

    from config.settings import load_settings
    from service.db.engine import make_engine

    # A ConfigError is printed as one line by service.cli.
    return make_engine(load_settings(os.environ).database_url)


def command(args) -> int:
    """Run ``ews token create|list|revoke``."""
    engine = _engine()
    try:
        if args.token_command == "create":
            try:
                token_id, token = create_token(engine, args.role, args.name, created_by="cli")
            except ValueError as exc:
                print(f"ews token create: {exc}", file=sys.stderr)
                return 2
            print(token)
            print(f"token #{token_id} ({args.role}, {args.name!r}); it is shown only now, keep it safe",
                  file=sys.stderr)
            return 0
        t = schema.api_tokens
        if args.token_command == "list":
            with engine.connect() as conn:
                for row in conn.execute(sa.select(t).order_by(t.c.id)):
                    state = "revoked" if row.revoked_at else "active"
                    print(f"{row.id}\t{row.prefix}...\t{row.role}\t{state}\t{row.name}")
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
