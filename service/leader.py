"""Leadership: exactly one instance at a time runs the scheduled jobs, through a lease row.

Every instance that runs the scheduler (roles ``all`` and ``worker``) keeps trying to
hold the ``scheduler`` row of the ``leases`` table. One atomic upsert both takes a
free or expired lease and renews one we already hold:

    INSERT INTO leases (name, holder, expires_at) VALUES (:name, :me, :now + ttl)
    ON CONFLICT (name) DO UPDATE SET holder = :me, expires_at = :now + ttl
        WHERE leases.holder = :me OR leases.expires_at < :now
    RETURNING holder

A row back means we hold the lease. The holder renews every ``ttl / 3`` seconds; when
it dies, the row expires and the next instance to try takes it over (at most
``ttl + ttl / 3`` seconds later). A clean stop deletes the row, so the handover is
immediate.

Whose clock: on PostgreSQL ``:now`` is the database server's ``clock_timestamp()``,
so the application machines' clocks may disagree without two leaders. Locally the
holder believes it leads only until ``ttl - 1 s`` after it *started* its last
successful renewal (a monotonic clock): if it cannot reach the database, it stops
leading before anyone else can take the lease. A process paused longer than that
in the middle of a job (a VM freeze) may overlap the next leader for one run; the
jobs are idempotent (conditional updates), so that costs work, not duplicates.

Why a lease row and not ``pg_try_advisory_lock``: an advisory lock lives as long as
one database session, so it needs a dedicated connection that must never be
recycled by the pool; it is PostgreSQL-only (SQLite would need a second code path);
and nobody can see who holds it without joining ``pg_locks``. The row is plain SQL
on both databases and ``SELECT * FROM leases`` says who leads and until when.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine

from service.db import dialect
from service.db.engine import reads_only
from service.db.schema import leases

log = logging.getLogger(__name__)

SCHEDULER_LEASE = "scheduler"
DEFAULT_TTL_S = 15.0
SAFETY_MARGIN_S = 1.0


def new_holder_id(instance_id: str | None = None) -> str:
    """A holder name unique to this process: the instance (host-pid) plus a random tag.

    The random tag matters in containers, where a restarted process has the same
    hostname and pid 1: it must not inherit the dead process's lease.
    """
    base = instance_id or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{uuid.uuid4().hex[:6]}"[:128]


class Lease:
    """A named lease in the ``leases`` table, kept (and retaken) by a background thread."""

    def __init__(
        self,
        engine: Engine,
        name: str = SCHEDULER_LEASE,
        holder: str | None = None,
        *,
        ttl: float = DEFAULT_TTL_S,
        renew_every: float | None = None,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        if ttl <= 2 * SAFETY_MARGIN_S:
            raise ValueError(f"lease ttl must be more than {2 * SAFETY_MARGIN_S:g} s")
        self.engine = engine
        self.name = name
        self.holder = holder or new_holder_id()
        self.ttl = ttl
        self.renew_every = renew_every or ttl / 3
        self.on_change = on_change
        self._valid_until = 0.0  # time.monotonic() until which we may act as leader
        self._was_leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lease (and has renewed it recently enough)."""
        return time.monotonic() < self._valid_until

    # -- one attempt -------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take or renew the lease once; return True when we hold it now. Database errors propagate."""
        started = time.monotonic()
        with self.engine.begin() as conn:
            now = _database_now(conn)
            statement = dialect.insert(conn, leases).values(
                name=self.name, holder=self.holder, expires_at=now + timedelta(seconds=self.ttl)
            )
            statement = statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
                where=(leases.c.holder == self.holder) | (leases.c.expires_at < now),
            ).returning(leases.c.holder)
            won = conn.execute(statement).first() is not None
        if won:
            self._valid_until = started + self.ttl - SAFETY_MARGIN_S
        else:
            self._valid_until = 0.0
        return won

    def release(self) -> None:
        """Give the lease up now (on a clean stop), so another instance takes over at once."""
        was = self.is_leader
        self._valid_until = 0.0
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder))
        except Exception:  # noqa: BLE001 - on the way out; the lease simply expires
            log.warning("could not release the %s lease; it expires within %g s", self.name, self.ttl)
        if was:
            log.info("released the %s lease (%s)", self.name, self.holder)

    # -- background renewal ------------------------------------------------------------------

    def start(self) -> "Lease":
        """Try once now (so a lone instance leads from the start), then keep trying in a thread."""
        self._tick()
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop renewing; by default give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if release:
            self.release()
        self._changed(False)

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            self._tick()

    def _next_wait(self) -> float:
        if not self._was_leading:
            return self.renew_every
        # Renew before the local validity runs out even if a renewal was slow.
        return max(0.1, min(self.renew_every, self._valid_until - time.monotonic() - SAFETY_MARGIN_S))

    def _tick(self) -> None:
        try:
            self.try_acquire()
        except Exception:  # noqa: BLE001 - the database is down: leadership lapses by time
            log.warning("could not renew the %s lease; leading until it lapses locally", self.name, exc_info=True)
        self._changed(self.is_leader)

    def _changed(self, leading: bool) -> None:
        if leading == self._was_leading:
            return
        self._was_leading = leading
        log.info("%s the %s lease (%s)", "took" if leading else "lost", self.name, self.holder)
        try:
            self.on_change(leading)
        except Exception:  # noqa: BLE001 - a callback must not stop the renewals
            log.exception("lease change callback failed")


def current_holder(engine: Engine, name: str = SCHEDULER_LEASE) -> tuple[str, datetime] | None:
    """Who holds ``name`` and until when (expired rows included), or None."""
    with reads_only(), engine.connect() as conn:
        row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
    return (row.holder, row.expires_at) if row else None


def _database_now(conn) -> datetime:
    """The database server's clock on PostgreSQL (one clock for every instance); ours on SQLite."""
    if dialect.is_postgresql(conn):
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one().astimezone(timezone.utc)
    return datetime.now(timezone.utc)


STARTUP_LOCK_KEY = 0x45575331  # "EWS1": the advisory lock key of start-up migrations and seeding


@contextlib.contextmanager
def startup_lock(engine: Engine):
    """Hold a PostgreSQL advisory lock while migrating and seeding, so instances started together go one at a time.

    Without it two fresh instances both see an empty database and both create the
    tables (or insert the seed), and one of them fails to start. On SQLite it does
    nothing: one instance per database file, and ``BEGIN IMMEDIATE`` serialises writers.
    """
    if not dialect.is_postgresql(engine):
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK_KEY})
            conn.commit()
