"""Answers shared by every caller of a route that holds no personal data, rebuilt only when their data changed.

A screen polls the station list every few seconds, and a control room has many screens. Building
the answer (the rows, their status, serialising them) costs tens of milliseconds; asking whether
it may have changed (a *mark*: one cheap query over versions, counts and timestamps) costs a
fraction of one. So the answer is kept with the mark it was built from; for ``check_every``
seconds it is served as it is, then the mark is asked again, and only a different mark rebuilds
it. While one request checks or rebuilds, the others get the answer in hand (at most one check
old). ``clear()`` drops every answer at once (this process changed the data).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

MAX_ANSWERS = 256  # distinct query strings kept; more (a crawler's) start the collection afresh


class SharedAnswers:
    """Bodies by key (a query string), each kept while the mark it was built from still holds."""

    def __init__(self, check_every: float) -> None:
        self.check_every = check_every
        self._held: dict[Hashable, tuple[float, object, bytes]] = {}  # key: (checked until, mark, body)
        self._lock = threading.Lock()  # one check or rebuild at a time

    def answer(self, key: Hashable, mark: Callable[[], object], build: Callable[[], bytes]) -> bytes:
        """The body for ``key``: the one held, or (when ``mark()`` moved) a new one from ``build()``."""
        held = self._held.get(key)
        if held is not None and held[0] > time.monotonic():
            return held[2]
        if held is not None and not self._lock.acquire(blocking=False):
            return held[2]  # another request is checking or rebuilding: serve the answer in hand meanwhile
        if held is None:
            self._lock.acquire()
        try:
            current = mark()
            held = self._held.get(key)  # perhaps built while this request waited for the lock
            if held is None or held[1] != current:
                held = (0.0, current, build())
            if len(self._held) >= MAX_ANSWERS and key not in self._held:
                self._held.clear()
            self._held[key] = (time.monotonic() + self.check_every, current, held[2])
            return held[2]
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Forget every answer (this process changed what they show)."""
        self._held = {}
