"""Short-lived links to one printable report, for a browser that cannot send a Bearer header.

The dashboard holds a staff token but a plain link (``<a href>``, a new tab, a print) cannot
carry ``Authorization: Bearer``. So the dashboard asks this module, with its token, for a
link to *one* report: ``/api/v1/alerts/{id}/report.html?ticket=…``. A ticket

- names the alert (it opens that report and nothing else: not another alert, not the JSON
  API, no other page);
- expires after ``LINK_TTL_S`` (15 minutes): a link copied from a printout or a browser's
  history is dead by the time anyone reads it;
- is signed with HMAC-SHA256 keyed by the issuing token's stored hash, so it needs no new
  secret in the deployment, and it dies with the token: a revoked (or deleted) token's
  tickets are refused at once;
- carries the token's role, checked again when it is used (viewer and up).

A token in the address (``?token=``) is refused here: tokens live for months and would land in
logs and histories. Tickets are not stored; nothing is written when one is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

import sqlalchemy as sa
from flask import g

from service.db import schema
from service.http.auth import Caller, check_role
from service.http.errors import Problem

LINK_TTL_S = 900
_PURPOSE = "ews-report-link-v1"


def _signature(token_hash: str, token_id: int, alert_id: int, expires: int) -> str:
    message = f"{_PURPOSE}|{token_id}|{alert_id}|{expires}".encode()
    digest = hmac.new(bytes.fromhex(token_hash), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _token_row(engine, token_id: int):
    t = schema.api_tokens
    with engine.connect() as conn:
        return conn.execute(sa.select(t.c.id, t.c.name, t.c.role, t.c.token_hash, t.c.revoked_at)
                            .where(t.c.id == token_id)).first()


def issue(token_hash: str, token_id: int, alert_id: int, now: datetime) -> str:
    """A ticket of token ``token_id`` (stored hash ``token_hash``) for the report of ``alert_id``, valid ``LINK_TTL_S``."""
    expires = int(now.timestamp()) + LINK_TTL_S
    return f"{token_id}.{alert_id}.{expires}.{_signature(token_hash, token_id, alert_id, expires)}"


def report_paths(engine, caller: Caller, alert_ids, now: datetime) -> dict[str, str]:
    """{alert id: path of its printable report with a fresh ticket of ``caller``} (one token read for all)."""
    row = _token_row(engine, caller.token_id)
    if row is None or row.revoked_at is not None:
        return {}
    return {str(alert_id): f"/api/v1/alerts/{alert_id}/report.html?ticket="
                           f"{issue(row.token_hash, row.id, alert_id, now)}" for alert_id in alert_ids}


def _refused(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="ews"'})


def verify(engine, ticket: str, alert_id: int, now: datetime) -> Caller:
    """The caller a ticket speaks for; a 401 problem when it is malformed, for another alert, expired or revoked."""
    parts = ticket.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]) or len(ticket) > 200:
        raise _refused("This report link is not valid. Open the report again from the dashboard.")
    token_id, ticket_alert, expires = (int(p) for p in parts[:3])
    if ticket_alert != alert_id:
        raise _refused("This report link is for another alert.")
    if expires < now.timestamp() or expires > now.timestamp() + LINK_TTL_S + 60:
        raise _refused("This report link has expired. Open the report again from the dashboard.")
    row = _token_row(engine, token_id)
    if row is None or row.revoked_at is not None:
        raise _refused("The token that made this report link has been revoked.")
    expected = _signature(row.token_hash, token_id, alert_id, expires)
    if not hmac.compare_digest(expected, parts[3]):
        raise _refused("This report link is not valid. Open the report again from the dashboard.")
    caller = Caller(token_id=row.id, name=row.name, role=row.role)
    check_role(caller, ("viewer",))
    g.ews_caller = caller
    return caller
