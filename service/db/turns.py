"""SQLite writers of one process take the write lock in turn, in arrival order.

Every SQLite transaction of a writer begins ``BEGIN IMMEDIATE`` (service/db/engine.py). Left to
SQLite, a writer that finds the lock taken polls for it with growing sleeps (1, 2, 5, 10, 15,
20, 25 ... ms), and one that commits and begins again at once (the ingest worker, a backlog
drain) keeps winning the moment between: the dispatcher's expansion of a warning, its claim and
its record of a sent SMS could wait 100 ms and more behind back-to-back batches. Inside the
process the writers now queue instead: the one that releases hands the turn to the longest
waiting, which wakes at once. Other processes (another instance, an ``ews`` command) still meet
SQLite's own locking, as before.
"""

from __future__ import annotations

import collections
import sqlite3
import threading


class _Waiter:
    __slots__ = ("connection", "thread", "called")

    def __init__(self, connection: object) -> None:
        self.connection = connection
        self.thread = threading.get_ident()
        self.called = threading.Event()


class WriteTurns:
    """One process's queue for one SQLite database's write lock: first come, first served."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # then the writer goes ahead without its turn (and SQLite's busy wait decides)
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
            if self._holder is None and not self._waiting:
                self._holder, self._holder_thread = connection, threading.get_ident()
                return
            waiter = _Waiter(connection)
            self._waiting.append(waiter)
        if waiter.called.wait(self.timeout):
            return
        with self._lock:
            if self._holder is not connection:
                self._waiting.remove(waiter)  # gone ahead without the turn

    def give_back(self, connection: object) -> None:
        """``connection`` committed, rolled back or closed: the longest waiting writer goes next."""
        with self._lock:
            if self._holder is not connection:
                return
            if self._waiting:
                waiter = self._waiting.popleft()
                self._holder, self._holder_thread = waiter.connection, waiter.thread
                waiter.called.set()
            else:
                self._holder = self._holder_thread = None

    def waiting(self) -> int:
        """How many writers wait for their turn now."""
        with self._lock:
            return len(self._waiting)

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
