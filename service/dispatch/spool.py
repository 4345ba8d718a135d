"""The Gammu spool reader: what gammu-smsd did with our messages, and the SMS it received.

Every ``interval`` (1 s) a background thread:

- **settles** the ``spooled`` notifications: a file the daemon moved to ``sent/`` makes the
  notification ``sent`` (``sent_at`` is when it was moved: that is when the modem handed it to
  the network); one moved to ``error/`` makes it ``failed`` (``gammu_error``) and, like a
  permanent Twilio error, it is never retried. A file that left the outbox for neither
  (removed by hand) fails as ``gammu_lost`` after ``lost_after_s``: it is not resent, because it
  may have been sent.
- **receives**: each message in ``inbox/`` (its parts settled for ``settle_s``, so a file the
  daemon is still writing is never read) goes through the keyword handling of the Twilio
  webhook (``inbound.handle_once``) and its reply is queued (kind ``reply``), in one
  transaction; then the files move to ``inbox/handled/``. The message's file name is its
  id: several instances reading one spool handle each message once, also across restarts.
- removes temporary files a crashed writer left in the outbox.

Each step is a conditional update or a claim, so several instances may read the same spool.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from alerts.messages import Templates
from service.db import schema
from service.dispatch import gammu_files as files
from service.dispatch import inbound
from service.dispatch.gammu import GammuProvider
from service.phones import mask
from service.wiring import Shared, nothing

log = logging.getLogger(__name__)

n = schema.notifications
HANDLED = "handled"
GAMMU_ERROR = "gammu_error"
GAMMU_LOST = "gammu_lost"


class SpoolReader:
    """Reads gammu-smsd's ``sent/``, ``error/`` and ``inbox/`` for one ``GammuProvider``."""

    def __init__(self, shared: Shared, gammu: GammuProvider, *, templates: Templates, tz: ZoneInfo,
                 wake_dispatcher: Callable[[], None] = nothing, interval: float = 1.0, settle_s: float = 2.0,
                 lost_after_s: float = 600.0) -> None:
        self.shared = shared
        self.gammu = gammu
        self.templates = templates
        self.tz = tz  # for the times in replies
        self.wake_dispatcher = wake_dispatcher  # a reply was queued
        self.interval = interval
        self.settle_s = settle_s
        self.lost_after = timedelta(seconds=lost_after_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "SpoolReader":
        """Read the spool in a background thread."""
        (self.gammu.inbox / HANDLED).mkdir(exist_ok=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gammu-spool", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        complained = 0.0
        while not self._stop.is_set():
            try:
                self.run_once()
            except OSError as exc:  # the spool went away (an unmounted disk): say so once a minute, not every second
                if time.monotonic() - complained > 60:
                    log.warning("cannot read the Gammu spool %s: %s; retrying", self.gammu.root, exc)
                    complained = time.monotonic()
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the reader
                log.exception("reading the Gammu spool failed; retrying")
            self._stop.wait(self.interval)

    def run_once(self) -> dict:
        """One pass: settle, receive, clean up; return counts of what was done."""
        done = {"sent": 0, "failed": 0, "received": 0}
        for outcome in self.settle():
            done[outcome] += 1
        done["received"] = self.receive()
        self.gammu.remove_stale_temporaries()
        return done

    # -- what the daemon did with our messages ---------------------------------------------------

    def settle(self) -> list[str]:
        """Apply the daemon's moves to ``sent/`` and ``error/`` to the spooled notifications."""
        with self.shared.engine.connect() as conn:
            rows = conn.execute(sa.select(n.c.id, n.c.phone, n.c.provider_sid, n.c.updated_at)
                                .where(n.c.status == "spooled", n.c.provider == self.gammu.name)
                                .order_by(n.c.id).limit(1000)).fetchall()
        outcomes = []
        for row in rows:
            outcome = self._settle_one(row)
            if outcome:
                outcomes.append(outcome)
        return outcomes

    def _settle_one(self, row) -> str | None:
        now = self.shared.clock()
        folder = self.gammu.where(row.provider_sid) if row.provider_sid else None
        if folder == "outbox":
            return None
        if folder == "sent":
            at = min(self.gammu.moved_at("sent", row.provider_sid) or now, now)
            if _settle(self.shared.engine, row.id, "sent", now, sent_at=at):
                self.shared.metrics.sms_sent.labels("sent_by_modem").inc()
                log.info("SMS %s to %s sent by gammu-smsd", row.id, mask(row.phone))
                return "sent"
            return None
        if folder == "error":
            message = "gammu-smsd moved the message to error/: the modem could not send it (see the daemon's log)"
            code = GAMMU_ERROR
        elif now - row.updated_at > self.lost_after:
            message = "the message left gammu-smsd's outbox for neither sent/ nor error/ (removed by hand?)"
            code = GAMMU_LOST
        else:
            return None  # moving between folders, or just removed: look again later
        if _settle(self.shared.engine, row.id, "failed", now, code=code, message=message):
            self.shared.metrics.sms_sent.labels("failed").inc()
            log.warning("SMS %s to %s failed: %s", row.id, mask(row.phone), message)
            return "failed"
        return None

    # -- received messages -----------------------------------------------------------------------

    def receive(self) -> int:
        """Handle every settled message in the inbox; return how many were new."""
        handled = 0
        for key, parts in self._messages().items():
            sender = parts[0].sender
            text = "".join(files.inbox_text((self.gammu.inbox / p.name).read_bytes(), p.ext) for p in parts)
            if self._handle(key, sender, text):
                handled += 1
            for part in parts:
                with contextlib.suppress(FileNotFoundError):  # another instance moved it first
                    os.replace(self.gammu.inbox / part.name, self.gammu.inbox / HANDLED / part.name)
        if handled:
            self.wake_dispatcher()
        return handled

    def _messages(self) -> dict[str, list]:
        """Inbox files grouped by message, parts in order, leaving out messages with a part still being written."""
        groups: dict[str, list] = collections.defaultdict(list)
        fresh = set()
        now = time.time()
        for entry in os.scandir(self.gammu.inbox):
            part = files.inbox_part(entry.name) if entry.is_file() else None
            if part is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat().st_mtime < self.settle_s:
                    fresh.add(part.key)
                groups[part.key].append(part)
        return {key: sorted(parts, key=lambda p: p.part) for key, parts in sorted(groups.items()) if key not in fresh}

    def _handle(self, key: str, sender: str, text: str) -> bool:
        """Apply one received message and queue its reply, once; False when it was handled before."""
        now = self.shared.clock()
        try:
            with self.shared.engine.begin() as conn:
                answer = inbound.handle_once(conn, self.templates, self.tz, now, sender, text, f"gammu:{key}"[:64])
                if answer is None:
                    return False
                reply, language = answer
                queued = inbound.queue_reply(conn, sender, reply, language, now)
        except sa.exc.IntegrityError:
            return False  # another instance handled it at the same moment
        log.info("SMS from %s through gammu-smsd handled%s", mask(sender), "; reply queued" if queued else "")
        return True


def _settle(engine, notification_id: int, status: str, now: datetime, *, sent_at: datetime | None = None,
            code: str | None = None, message: str | None = None) -> bool:
    """Move a spooled notification to ``sent`` or ``failed`` (only if it is still spooled)."""
    with engine.begin() as conn:
        return conn.execute(sa.update(n).where(n.c.id == notification_id, n.c.status == "spooled").values(
            status=status, sent_at=sent_at, next_attempt_at=None, error_code=code, error_message=message,
            updated_at=now)).rowcount > 0
