"""The notifications outbox: atomic claims and state changes (service/dispatch/expansion.py fills it).

States of a notification (column ``status``)::

    pending --claim--> sending --provider accepted--> sent --callback--> delivered | undelivered | failed
       ^                  |  \\--permanent error--> failed
       |                  |   \\--timeout / 5xx / crash--> unknown --lookup found--> sent
       +--429, refused ---+    \\                             \\--not found (after the grace)--> pending
                               '--written to Gammu's outbox--> spooled --daemon moved it--> sent | failed

Every write that ends a send attempt is conditional on the row still being in the state
and claim the writer saw, so late answers, status callbacks and reconciliation never undo
each other; status callbacks only move a row forward.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from alerts import policy
from service import subscribers
from service.db import dialect, schema
from service.db.engine import reads_only
from service.dispatch.providers import OPT_OUT_CODES, STATUS_MAP
from service.phones import mask_numbers

log = logging.getLogger(__name__)

n = schema.notifications
ev = schema.alert_events
al = schema.alerts

RANK = {"pending": 0, "sending": 1, "unknown": 1, "spooled": 2, "sent": 3, "delivered": 4, "undelivered": 4, "failed": 4,
        "superseded": 4, "expired": 4}
FINAL = ("delivered", "undelivered", "failed", "superseded", "expired")
# The claim's order (spec section 10, "Urgent first"): most urgent, then oldest.
CLAIM_ORDER = (n.c.priority, n.c.created_at, n.c.id)


def error_text(message: str | None) -> str:
    """A provider's error message as stored: phone numbers masked, at most 500 characters."""
    return (mask_numbers(message) or "")[:500]


# --- claims and outcomes -----------------------------------------------------------------------

CLAIM_COLUMNS = (n.c.id, n.c.phone, n.c.body, n.c.attempts, n.c.created_at, n.c.subscriber_id, n.c.kind,
                 n.c.claimed_at, n.c.priority, n.c.provider, n.c.error_code, n.c.alert_id, n.c.event_id, n.c.valid_until)


def claim(engine, instance: str, count: int, now: datetime, provider: str | None = None) -> list:
    """Atomically move up to ``count`` due pending notifications to ``sending`` for ``instance`` (committed),
    recording ``provider`` as the one they will be tried at (the failover's first choice)."""
    if count <= 0 or not _found(engine, sa.select(n.c.id).where(_due(now))):
        return []
    with engine.begin() as conn:
        return claim_on(conn, instance, count, now, provider)


def claim_on(conn, instance: str, count: int, now: datetime, provider: str | None = None) -> list:
    """``claim`` inside the caller's transaction (the expansion's: one write turn for a new warning's rows and their claim)."""
    if count <= 0:
        return []
    due = dialect.claimable(sa.select(n.c.id).where(_due(now)).order_by(*CLAIM_ORDER).limit(count), conn)
    rows = conn.execute(_take(due, instance, now, provider)).fetchall()
    return sorted(rows, key=lambda r: (r.priority, r.created_at, r.id))


def _found(engine, query) -> bool:
    """True when ``query`` finds a row. A read first: on SQLite the write transaction that acts on it queues for the
    lock behind the ingest's batches, and the pump looks many times a second (a freed sender, a wake-up)."""
    with reads_only(), engine.connect() as conn:
        return conn.execute(query.limit(1)).first() is not None


def _due(now: datetime):
    return sa.and_(n.c.status == "pending", sa.or_(n.c.next_attempt_at.is_(None), n.c.next_attempt_at <= now))


def _take(ids, instance: str, now: datetime, provider: str | None = None):
    """The UPDATE that claims the rows ``ids`` for ``instance`` (returning what a sender needs)."""
    bound = {"provider": provider} if provider else {}
    return (sa.update(n).where(n.c.id.in_(ids))
            .values(status="sending", claimed_at=now, claimed_by=instance[:64], attempts=n.c.attempts + 1,
                    updated_at=now, **bound)
            .returning(*CLAIM_COLUMNS))


def more_urgent(engine, row, instance: str, now: datetime, held_within: timedelta = timedelta(seconds=10)):
    """At a send slot: a due row more urgent than the claimed ``row``, claimed in its place (``row`` given back);
    None while another sender holds a more urgent row unsent (claimed within ``held_within``); else ``row``.

    This is what makes a new AWAS warning wait only for messages already handed to the provider:
    not for rows other senders claimed before it was queued, nor behind those they hold for later slots.
    """
    if row.priority <= 0:
        return row
    urgent = sa.select(n.c.id).where(_due(now), n.c.priority < row.priority)
    held = sa.select(n.c.id).where(n.c.status == "sending", n.c.priority < row.priority,
                                   n.c.claimed_at > now - held_within)
    with reads_only(), engine.connect() as conn:  # one read first: most slots find nothing more urgent
        found, holding = conn.execute(sa.select(sa.exists(urgent), sa.exists(held))).one()
        if not found:
            return None if holding else row
    with engine.begin() as conn:
        taken = conn.execute(_take(dialect.claimable(urgent.order_by(*CLAIM_ORDER).limit(1), conn), instance, now)).first()
        if taken is None:  # another sender took it first, and holds it now
            return None
        conn.execute(_given_back(row, instance, now))
    return taken


def fate(engine, row, now: datetime) -> str | None:
    """``alerts.policy.fate`` of a claimed row: None to send it, else ``superseded`` or ``expired``."""
    queued = policy.Queued(kind=row.kind, valid_until=row.valid_until)
    if row.alert_id is not None:
        with reads_only(), engine.connect() as conn:  # on SQLite: not behind every writer
            queued = _queued(conn, row, queued)
    return policy.fate(queued, now)


def _queued(conn, row, queued):
    """The facts of an alert's notification: its event's level, the alert now, and (all-clear) an earlier warning."""
    alert = conn.execute(sa.select(al.c.state, al.c.level).where(al.c.id == row.alert_id)).first()
    if alert is None:
        return queued
    level = conn.execute(sa.select(ev.c.level).where(ev.c.id == row.event_id)).scalar() if row.event_id else None
    warnings = None
    if row.kind == "all_clear":
        warnings = tuple(conn.execute(sa.select(n.c.status).where(
            n.c.alert_id == row.alert_id, n.c.subscriber_id == row.subscriber_id, n.c.kind == "warning")).scalars())
    return dataclasses.replace(queued, level=level, alert_state=alert.state, alert_level=alert.level, warnings=warnings)


def drop(engine, row, instance: str, status: str, now: datetime) -> bool:
    """Record that a claimed row is not sent (``superseded`` or ``expired``); False if it was no longer ours."""
    with engine.begin() as conn:
        return conn.execute(_mine(row, instance).values(status=status, next_attempt_at=None,
                                                        updated_at=now)).rowcount == 1


def release(engine, row, instance: str, now: datetime, next_attempt_at: datetime | None = None) -> None:
    """Give back a claimed row that was never sent (stopping, or the rate limit says later)."""
    with engine.begin() as conn:
        conn.execute(_given_back(row, instance, now, next_attempt_at))


def _given_back(row, instance: str, now: datetime, next_attempt_at: datetime | None = None):
    """The UPDATE that gives a claimed, unsent row back to the queue (the claim not counted as an attempt)."""
    return _mine(row, instance).values(status="pending", attempts=n.c.attempts - 1, next_attempt_at=next_attempt_at,
                                       updated_at=now)


def _mine(row, instance: str):
    return sa.update(n).where(n.c.id == row.id, n.c.status == "sending", n.c.claimed_by == instance[:64],
                              n.c.attempts == row.attempts)


def mark_sent(engine, notification_id: int, provider: str, sid: str, status: str, now: datetime) -> None:
    """Record an accepted message: its provider sid, and ``sent`` unless a callback got further already."""
    with engine.begin() as conn:
        conn.execute(sa.update(n).where(n.c.id == notification_id, n.c.provider_sid.is_(None))
                     .values(provider_sid=sid, provider=provider, updated_at=now))
        lower = [s for s, rank in RANK.items() if rank < RANK.get(status, RANK["sent"])]
        conn.execute(sa.update(n).where(n.c.id == notification_id, n.c.status.in_(lower))  # spooled: not sent yet
                     .values(status=status, sent_at=None if status == "spooled" else now, next_attempt_at=None,
                             error_code=None, error_message=None, updated_at=now))


def mark_retry(engine, row, instance: str, next_attempt_at: datetime, code, message: str, now: datetime) -> None:
    """Back to pending after a transient error, not before ``next_attempt_at``."""
    with engine.begin() as conn:
        conn.execute(_mine(row, instance).values(status="pending", next_attempt_at=next_attempt_at,
                                                 error_code=None if code is None else str(code)[:16],
                                                 error_message=error_text(message), updated_at=now))


def mark_failed(engine, row, instance: str | None, code, message: str, now: datetime, opt_out: bool = False) -> None:
    """A permanent failure: no retry. ``opt_out`` also marks the subscriber opted out (error 21610)."""
    with engine.begin() as conn:
        query = _mine(row, instance) if instance else sa.update(n).where(n.c.id == row.id, n.c.status.in_(["pending", "unknown"]))
        changed = conn.execute(query.values(status="failed", next_attempt_at=None,
                                            error_code=None if code is None else str(code)[:16],
                                            error_message=error_text(message), updated_at=now)).rowcount
        if changed and opt_out and row.subscriber_id is not None:
            subscribers.set_opted_out(conn, row.subscriber_id, True, now)


def mark_unknown(engine, row, instance: str, reconcile_at: datetime, code, message: str, now: datetime) -> None:
    """The provider may have accepted it: reconcile at ``reconcile_at`` before any resend."""
    with engine.begin() as conn:
        conn.execute(_mine(row, instance).values(status="unknown", next_attempt_at=reconcile_at,
                                                 error_code=None if code is None else str(code)[:16],
                                                 error_message=error_text(message), updated_at=now))


def recover_stale(engine, now: datetime, older_than: timedelta, dead_instances: list[str] | None = None) -> int:
    """Rows left in ``sending`` (a crashed or hung sender) become ``unknown``, to be reconciled now."""
    cond = n.c.claimed_at < now - older_than
    if dead_instances:
        cond = sa.or_(cond, n.c.claimed_by.in_(dead_instances))
    cond = sa.and_(n.c.status == "sending", cond)
    if not _found(engine, sa.select(n.c.id).where(cond)):
        return 0
    with engine.begin() as conn:
        return conn.execute(sa.update(n).where(cond).values(status="unknown", next_attempt_at=now, updated_at=now)).rowcount


def sending_instances(engine) -> list[str]:
    """The instances that hold rows in ``sending``."""
    with reads_only(), engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(n.c.claimed_by).where(n.c.status == "sending").distinct()) if r[0]]


def claim_unknown(engine, count: int, now: datetime, lease: timedelta) -> list:
    """Take up to ``count`` unknown rows due for reconciliation; lease them for ``lease``."""
    due_now = sa.and_(n.c.status == "unknown", sa.or_(n.c.next_attempt_at.is_(None), n.c.next_attempt_at <= now))
    if count <= 0 or not _found(engine, sa.select(n.c.id).where(due_now)):
        return []
    with engine.begin() as conn:
        due = dialect.claimable(sa.select(n.c.id).where(due_now).order_by(n.c.id).limit(count), conn)
        return conn.execute(
            sa.update(n).where(n.c.id.in_(due)).values(next_attempt_at=now + lease, updated_at=now)
            .returning(*CLAIM_COLUMNS)
        ).fetchall()


def requeue_unknown(engine, row, now: datetime, next_attempt_at: datetime | None = None) -> bool:
    """Not found at the provider: back to pending for a resend (unless something else settled it)."""
    with engine.begin() as conn:
        return conn.execute(sa.update(n).where(n.c.id == row.id, n.c.status == "unknown")
                            .values(status="pending", next_attempt_at=next_attempt_at, updated_at=now)).rowcount > 0


def delay_unknown(engine, row, when: datetime, now: datetime) -> None:
    """Try reconciling again at ``when``."""
    with engine.begin() as conn:
        conn.execute(sa.update(n).where(n.c.id == row.id, n.c.status == "unknown").values(next_attempt_at=when, updated_at=now))


def apply_status(engine, now: datetime, *, notification_id: int | None, sid: str | None, provider_status: str,
                 error_code: str | None = None, error_message: str | None = None, provider: str = "twilio") -> str | None:
    """Apply a provider status callback (forward transitions only); return the row's status afterwards, None if unknown."""
    status = STATUS_MAP.get((provider_status or "").lower())
    with engine.begin() as conn:
        row = None
        if notification_id is not None:
            row = conn.execute(sa.select(n).where(n.c.id == notification_id)).first()
            if row is not None and sid and row.provider_sid and row.provider_sid != sid:
                log.warning("status callback for notification %s names sid %s, stored %s", notification_id, sid, row.provider_sid)
        if row is None and sid:
            row = conn.execute(sa.select(n).where(n.c.provider_sid == sid)).first()
        if row is None:
            return None
        if sid and row.provider_sid is None:
            conn.execute(sa.update(n).where(n.c.id == row.id, n.c.provider_sid.is_(None))
                         .values(provider_sid=sid, provider=provider, updated_at=now))
        if status is None:
            return row.status
        lower = [s for s, rank in RANK.items() if rank < RANK[status]]
        values = {"status": status, "next_attempt_at": None, "updated_at": now}
        if row.sent_at is None:
            values["sent_at"] = now
        if error_code:
            values["error_code"] = str(error_code)[:16]
            values["error_message"] = error_text(error_message) or None
        changed = conn.execute(sa.update(n).where(n.c.id == row.id, n.c.status.in_(lower)).values(**values)).rowcount
        if changed and error_code and _int(error_code) in OPT_OUT_CODES and row.subscriber_id is not None:
            subscribers.set_opted_out(conn, row.subscriber_id, True, now)
        return status if changed else row.status


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def counts(engine) -> dict[str, int]:
    """Notifications by status."""
    with reads_only(), engine.connect() as conn:
        return {s: c for s, c in conn.execute(sa.select(n.c.status, sa.func.count()).group_by(n.c.status))}
