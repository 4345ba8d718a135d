"""The siren controller thread: decides, stores and publishes commands, re-sends unanswered ones, gives up on silence."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from alerts import sirens as rules
from sensors import topics
from service.db.engine import reads_only
from service.db.schema import siren_commands
from service.sirens.plan import next_renewal, plan
from service.sirens.state import siren_owners
from service.sirens.troubles import raise_trouble

log = logging.getLogger(__name__)

SIREN_LEASE = "sirens"
POLL_S = 2.0  # safety net: alerts another process changed, a wake-up that was missed


class SirenController:
    """Decides, stores and publishes siren commands; re-sends unanswered ones on their own precise timer."""

    def __init__(self, services, publish: Callable[[str, bytes], bool], *, leader=None,
                 wake_event: threading.Event | None = None) -> None:
        self.services = services
        self.publish = publish
        self.leader = leader
        self.timeout_s = services.settings.siren_ack_timeout_s
        # Set by whoever wakes the controller (service/bootstrap.py hands the same event to the ingest side).
        self._wake = wake_event or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sirens", daemon=True)

    def start(self) -> "SirenController":
        """Start the thread (it leads only while it holds the lease, when there is one)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the pass in hand."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Look again now (alerts changed, an operator's command, an ack)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = POLL_S
            if self.leader is None or self.leader.is_leader:
                try:
                    due = self.run_once(self.services.clock())
                    if due is not None:
                        wait = min(POLL_S, max(0.0, (due - self.services.clock()).total_seconds()))
                except Exception:
                    log.exception("siren pass failed; trying again in %g s", POLL_S)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self, now: datetime) -> datetime | None:
        """One pass: new commands, publications and re-sends due, give-ups; return when the next is due."""
        # SQLite: the look-ups of each pass (at every alert event) never queue for the write lock.
        with reads_only(), self.services.engine.connect() as conn:
            needed = plan(conn, now, self.timeout_s, apply=False)
        if needed:
            with self.services.engine.begin() as conn:
                plan(conn, now, self.timeout_s, apply=True)
        due = self._publish_due(now)
        with reads_only(), self.services.engine.connect() as conn:
            renewal = next_renewal(conn, self.timeout_s)
        return min((t for t in (due, renewal) if t is not None), default=None)

    def _publish_due(self, now: datetime) -> datetime | None:
        with reads_only(), self.services.engine.connect() as conn:  # a write turn only for what is due
            pending = conn.execute(sa.select(siren_commands).where(siren_commands.c.status == "pending")
                                   .order_by(siren_commands.c.created_at)).all()
            listed = set(siren_owners(conn)) if pending else set()
        next_due: datetime | None = None
        for command in pending:
            if command.siren_id not in listed:
                self._drop(command)  # its station no longer lists it: nobody to command, nothing to report
                continue
            if now >= command.expires_at and command.attempts > 0:
                step = "unanswered"  # e.g. found after a long outage: a late copy would be ignored anyway
            else:
                step = rules.resend_step(command.attempts, command.last_sent_at, now, self.timeout_s)
            if step == "send" and self._claim_send(command, now):
                self._send(command)
                due = now + timedelta(seconds=self.timeout_s)
            elif step == "unanswered":
                self._give_up(command, now)
                continue
            else:
                due = rules.due_at(command.attempts, command.last_sent_at, self.timeout_s)
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
        return next_due

    def _claim_send(self, command, now: datetime) -> bool:
        """Count the publication before it happens (conditional: one publisher per attempt)."""
        with self.services.engine.begin() as conn:
            return conn.execute(sa.update(siren_commands).where(
                siren_commands.c.command_id == command.command_id, siren_commands.c.status == "pending",
                siren_commands.c.attempts == command.attempts,
            ).values(attempts=command.attempts + 1, last_sent_at=now)).rowcount == 1

    def _send(self, command) -> None:
        topic = topics.siren_command_topic(self.services.settings.mqtt_topic_prefix, command.siren_id)
        body = json.dumps(command.payload, separators=(",", ":")).encode("utf-8")
        self.services.metrics.siren_published.labels("again" if command.attempts else "first").inc()
        if not self.publish(topic, body):
            log.warning("siren %s: command %s could not be handed to the broker now; re-sent in %g s",
                        command.siren_id, command.command_id, self.timeout_s)
        elif command.attempts:
            log.warning("siren %s: no ack for command %s; published again (%d of %d)", command.siren_id,
                        command.command_id, command.attempts, rules.MAX_RESENDS)

    def _drop(self, command) -> None:
        with self.services.engine.begin() as conn:
            conn.execute(sa.update(siren_commands).where(siren_commands.c.command_id == command.command_id,
                                                         siren_commands.c.status == "pending")
                         .values(status="superseded"))
        log.info("siren %s is no longer in the registry: command %s dropped", command.siren_id, command.command_id)

    def _give_up(self, command, now: datetime) -> None:
        with self.services.engine.begin() as conn:
            won = conn.execute(sa.update(siren_commands).where(
                siren_commands.c.command_id == command.command_id, siren_commands.c.status == "pending",
            ).values(status="unanswered")).rowcount == 1
            opened = won and raise_trouble(conn, command.siren_id, command.station_id, "silent", now,
                                           command_id=command.command_id, exercise=self.services.settings.exercise)
        if won:
            self.services.metrics.siren_unanswered.inc()
        if opened:
            self.services.wake.dispatcher()
