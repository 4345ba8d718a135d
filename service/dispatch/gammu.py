"""The Gammu provider: SMS through a running ``gammu-smsd`` and its ``files`` backend (spec section 13).

``EWS_GAMMU_SPOOL`` holds the daemon's ``inbox/``, ``outbox/``, ``sent/`` and ``error/``.

- ``send()`` writes one file per notification into ``outbox/``, atomically: the text goes to a
  hidden temporary name the daemon ignores, is fsynced, then linked to its real name (a link
  never replaces a file, so a name is written once) and the folder is fsynced. The daemon never
  reads half a message, and a crash leaves at most a hidden temporary file (removed later).
- The file name carries the priority letter of ``alerts.priority`` and the notification id
  (``service.dispatch.gammu_files``): the daemon sends urgent messages first, and ``lookup()``
  finds a notification's file in ``outbox/``, ``sent/`` or ``error/`` after a restart, so a
  message written before a crash is never written again.
- The message is ``spooled`` once its file is in the outbox; it is *sent* (handed to the
  network) when the daemon moves it to ``sent/``, and failed when it moves it to ``error/``:
  ``service.dispatch.spool.SpoolReader`` reads those moves and the received messages.
- At most ``outbox_max`` of our files wait in the outbox; the others wait in the database, in
  order, where a newer and more urgent message can still overtake them. ``send()`` raises
  ``Busy`` when the outbox is full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from service.dispatch import gammu_files as files
from service.dispatch.providers import Busy, Found, Permanent, ProviderResult, Transient
from service.phones import mask

log = logging.getLogger(__name__)

FOLDERS = ("outbox", "sent", "error")
TEMP_MAX_AGE_S = 60.0  # a write takes milliseconds: an older temporary file was left by a crash
STALL_S = 120.0  # our files waiting this long with none leaving the outbox: the daemon is not sending


@dataclasses.dataclass(eq=False, repr=False)
class GammuProvider:
    """Writes outbox files for gammu-smsd; finds them again by notification id."""

    name = "gammu"
    can_lookup = True
    receives = True  # two-way: a resident's SMS arrives here, and the reply goes back through it
    wants_notification = True

    spool: str | Path
    fmt: str = dataclasses.field(default="detail", kw_only=True)
    outbox_max: int = dataclasses.field(default=10, kw_only=True)
    busy_wait: float = dataclasses.field(default=2.0, kw_only=True)
    stall_s: float = dataclasses.field(default=STALL_S, kw_only=True)
    clock: Callable[[], float] = dataclasses.field(default=time.monotonic, kw_only=True)

    def __post_init__(self) -> None:
        self.root = Path(self.spool)
        self.inbox, self.outbox = self.root / "inbox", self.root / "outbox"
        self.sent, self.error = self.root / "sent", self.root / "error"
        self._lock = threading.Lock()
        self._waiting: set[str] = set()  # our names in the outbox at the last look
        self._progress_at = self.clock()  # when one of our files last left the outbox (or it was empty)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, to: str, body: str, callback_url: str | None = None, notification=None) -> ProviderResult:
        """Spool ``body`` for ``to`` as the outbox file of ``notification``; return its file name."""
        if notification is None:
            raise Permanent("the Gammu provider sends notifications only (their id names the file)", "gammu_usage")
        names = self.names(notification)
        where = self._where(names)
        if where is not None:  # written before (its record was lost): never write it twice
            return ProviderResult(where[1], "spooled", provider=self.name)
        try:
            content = files.outbox_content(to, body, self.fmt, datetime.now(timezone.utc))
            name = files.outbox_name(notification.priority, notification.created_at, notification.id, to, self.fmt)
        except ValueError as exc:
            raise Permanent(str(exc), "gammu_invalid") from None
        self._wait_for_room()
        try:
            self._write(name, content)
        except FileExistsError:
            pass  # another writer of the same notification finished first: one file, as it must be
        except OSError as exc:
            raise Transient(f"cannot write to {self.outbox}: {exc.strerror or exc}", "gammu_spool") from None
        log.info("SMS %s to %s spooled for gammu-smsd as %s", notification.id, mask(to), name)
        return ProviderResult(name, "spooled", provider=self.name)

    def _write(self, name: str, content: bytes) -> None:
        """Write ``outbox/name`` so that the daemon sees all of it or nothing."""
        temp = self.outbox / f"{files.TEMP_PREFIX}{uuid.uuid4().hex}{files.TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o660)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, self.outbox / name)  # fails (EEXIST) rather than replace a file
        finally:
            os.unlink(temp)
        _fsync_dir(self.outbox)

    def _wait_for_room(self) -> None:
        deadline = self.clock() + self.busy_wait
        while True:
            waiting = self._look()
            if len(waiting) < self.outbox_max:
                return
            if self.clock() >= deadline:
                raise Busy(f"{len(waiting)} messages already wait in gammu-smsd's outbox", "gammu_busy")
            time.sleep(0.1)

    # -- finding files ---------------------------------------------------------------------------

    def names(self, notification) -> list[str]:
        """The names the outbox file of ``notification`` may have."""
        return files.names_for(notification.priority, notification.created_at, notification.id, notification.phone)

    def _where(self, names: list[str]) -> tuple[str, str] | None:
        for folder in FOLDERS:
            for name in names:
                if (self.root / folder / name).exists():
                    return folder, name
        return None

    def where(self, name: str) -> str | None:
        """The folder (outbox, sent or error) that holds file ``name`` now, or None."""
        found = self._where([name])
        return found[0] if found else None

    def moved_at(self, folder: str, name: str) -> datetime | None:
        """When the daemon moved ``name`` into ``folder`` (the inode's change time), or None."""
        try:
            return datetime.fromtimestamp((self.root / folder / name).stat().st_ctime, timezone.utc)
        except OSError:
            return None

    def lookup(self, to: str, body: str, since: datetime, notification=None) -> Found | None:
        """Our file of ``notification`` in outbox/, sent/ or error/ (a send whose record was lost), or None."""
        if notification is None:
            return None
        try:
            where = self._where(self.names(notification))
        except ValueError:
            return None
        return None if where is None else Found(where[1], "spooled", provider=self.name)

    # -- health ----------------------------------------------------------------------------------

    def _look(self) -> set[str]:
        """Our files waiting in the outbox now; notes when one left it (the daemon is working)."""
        waiting = {name for name in os.listdir(self.outbox) if files.notification_id(name) is not None}
        with self._lock:
            if not waiting or self._waiting - waiting:
                self._progress_at = self.clock()
            self._waiting = waiting
        return waiting

    def problem(self) -> str | None:
        """Why this provider cannot send now (spool unusable, daemon not sending), or None."""
        for folder in (self.outbox, self.sent, self.error):
            if not folder.is_dir():
                return f"{folder} is missing"
        if not os.access(self.outbox, os.W_OK | os.X_OK):
            return f"{self.outbox} is not writable"
        try:
            waiting = self._look()
        except OSError as exc:
            return f"cannot read {self.outbox}: {exc.strerror or exc}"
        with self._lock:
            stalled = self.clock() - self._progress_at
        if waiting and stalled > self.stall_s:
            return f"{len(waiting)} messages wait in the outbox and none left it for {stalled:.0f} s: is gammu-smsd running?"
        return None

    def remove_stale_temporaries(self, max_age: float = TEMP_MAX_AGE_S) -> int:
        """Delete temporary files a crashed writer left in the outbox; return how many."""
        removed = 0
        now = time.time()
        for entry in os.scandir(self.outbox):
            if entry.name.startswith(files.TEMP_PREFIX) and entry.name.endswith(files.TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > max_age:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def close(self) -> None:
        """Nothing to release."""


def _fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
