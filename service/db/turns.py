"""SQLite writers of one process take the write lock in turn: one that has waited long enough goes next.

Every SQLite transaction of a writer begins ``BEGIN IMMEDIATE`` (service/db/engine.py). Left to
SQLite, a writer that finds the lock taken polls for it with growing sleeps (1, 2, 5, 10, 15,
20, 25 ... ms), and one that commits and begins again at once (the ingest worker, a backlog
drain) keeps winning the moment between: the dispatcher's expansion of a warning, its claim and
its record of a sent SMS could wait 100 ms and more behind back-to-back batches. Inside the
process the writers now wait on a queue instead and are woken the moment the lock is given back.
The writer giving it back may take it again at once (handing it over at every commit would make
the busiest writer wait for every other thread to be scheduled: on a loaded machine a convoy),
unless the longest-waiting writer has waited ``HANDOVER_AFTER_S``: then it is handed the turn.
(FIFO hand-over at every commit collapsed ``ews bench latency --rate 2000 --stations 500`` on a loaded
machine: p50 7 s, where this and no queue at all gave 0.1 s.)
Other processes (another instance, an ``ews`` command) still meet SQLite's own locking, as before.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time

HANDOVER_AFTER_S = 0.002  # a waiter older than this is handed the turn at the next give-back


class _Waiter:
    __slots__ = ("connection", "thread", "since", "called")

    def __init__(self, connection: object) -> None:
        self.connection = connection
        self.thread = threading.get_ident()
        self.since = time.monotonic()
        self.called = threading.Event()


class WriteTurns:
    """One process's queue for one SQLite database's write lock."""

    def __init__(self, timeout: float, handover_after: float = HANDOVER_AFTER_S) -> None:
        self.timeout = timeout  # then the writer goes ahead without its turn (and SQLite's busy wait decides)
        self.handover_after = handover_after
        self._lock = threading.Lock()
        self._holder: object | None = None
        self._holder_thread: int | None = None
        self._waiting: collections.deque[_Waiter] = collections.deque()

    def take(self, connection: object) -> None:
        """Wait for the turn of ``connection`` (a DBAPI connection about to ``BEGIN IMMEDIATE``)."""
        with self._lock:
            if self._holder is connection:
                return
            if self._holder is not None and self._holder_thread == threading.get_ident():
                return  # a second transaction on this thread: SQLite's locking decides, as it always did
            if self._holder is None and not self._starving():
                self._hold(connection, threading.get_ident())
                return
            waiter = _Waiter(connection)
            self._waiting.append(waiter)
        deadline = waiter.since + self.timeout
        while True:
            left = deadline - time.monotonic()
            called = left > 0 and waiter.called.wait(left)
            with self._lock:
                if self._holder is connection:
                    return  # handed over
                if self._holder is None:
                    self._waiting.remove(waiter)
                    self._hold(connection, waiter.thread)
                    return
                if not called:
                    self._waiting.remove(waiter)  # gone ahead without the turn
                    return
                waiter.called.clear()  # another writer took it first: wait for the next give-back

    def give_back(self, connection: object) -> None:
        """``connection`` committed, rolled back or closed: wake the longest waiting writer (hand it over if it starves)."""
        with self._lock:
            if self._holder is not connection:
                return
            self._holder = self._holder_thread = None
            if not self._waiting:
                return
            first = self._waiting[0]
            if self._starving():
                self._waiting.popleft()
                self._hold(first.connection, first.thread)
            first.called.set()

    def waiting(self) -> int:
        """How many writers wait for their turn now."""
        with self._lock:
            return len(self._waiting)

    def _starving(self) -> bool:
        return bool(self._waiting) and time.monotonic() - self._waiting[0].since >= self.handover_after

    def _hold(self, connection: object, thread: int) -> None:
        self._holder, self._holder_thread = connection, thread

    def connection_class(self) -> type[sqlite3.Connection]:
        """A ``sqlite3.Connection`` (the ``factory`` of ``sqlite3.connect``) that gives its turn back after
        COMMIT and ROLLBACK, not before: the next writer's BEGIN IMMEDIATE then finds the lock free."""
        turns = self

        class TurnTakingConnection(sqlite3.Connection):
            def commit(self) -> None:
                try:
                    super().commit()
                finally:
                    turns.give_back(self)

            def rollback(self) -> None:
                try:
                    super().rollback()
                finally:
                    turns.give_back(self)

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    turns.give_back(self)

        return TurnTakingConnection
