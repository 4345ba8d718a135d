"""The SMS rate: at most ``EWS_SMS_MAX_PER_SECOND`` requests reach the provider in any second.

Two parts. A *budget* hands out request slots at least ``interval`` apart, like a GCRA: it keeps
a theoretical arrival time (the next free slot) and each reservation moves it one interval on.
``LocalBudget`` keeps it in memory, for a deployment of one sending process (SQLite). The
``RateLimiter`` is the waiting side, one per process: its sender threads reserve slots from the
budget, sleep until theirs comes, and then admit at most ``rate`` request starts in any sliding
second of their own (a thread that wakes late must not bunch with the next ones).
"""

from __future__ import annotations

import collections
import threading
import time


class LocalBudget:
    """Request slots ``interval`` apart, kept in this process (one sending process in the deployment)."""

    def __init__(self, interval: float, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = 0.0  # the theoretical arrival time: the next free slot
        self._lock = threading.Lock()

    def reserve(self, max_wait: float | None = None) -> tuple[float, bool]:
        """Take the next slot unless it is more than ``max_wait`` away; return (wait, taken)."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            if max_wait is not None and slot - now > max_wait:
                return slot - now, False
            self._next = slot + self.interval
            return slot - now, True

    def delay(self) -> float:
        """How long the next reservation would wait (without reserving)."""
        with self._lock:
            return max(0.0, self._next - self.clock())

    def hold(self, seconds: float) -> None:
        """No slot in the next ``seconds`` (a 429's Retry-After, a full second)."""
        with self._lock:
            self._next = max(self._next, self.clock() + seconds)


class RateLimiter:
    """The waiting side of a budget, shared by every sender thread of a process.

    Each ``acquire()`` reserves the next slot of the budget, so request starts are at least
    ``1/rate`` apart. A thread that wakes late for its slot (a busy machine) could still start
    together with the next ones, so ``acquire()`` also admits at most ``rate`` starts of this
    process in any sliding second. ``pause_until()`` holds every slot back (a 429 with
    Retry-After applies to the whole account, not to one message).
    """

    def __init__(self, rate: float, clock=time.monotonic, margin: float = 0.0, budget=None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        # ``margin`` widens the spacing a little, so that network jitter between our clock and
        # the provider's never bunches requests into more than ``rate`` per second over there.
        self.interval = (1.0 + margin) / rate
        self.clock = clock
        self.budget = budget if budget is not None else LocalBudget(self.interval, clock)
        self._cap = max(1, int(rate))  # starts admitted in any sliding second
        self._starts: collections.deque[float] = collections.deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the next slot; return how long to wait for it (seconds, >= 0)."""
        return self.budget.reserve()[0]

    def delay(self) -> float:
        """How long the next reservation would wait (without reserving)."""
        with self._lock:
            paused = self._paused_until - self.clock()
        return max(0.0, paused, self.budget.delay())

    def acquire(self, stop: threading.Event | None = None, max_wait: float | None = None,
                at_slot=None) -> float | None:
        """Wait for a slot; return None when it came, else the wait still needed.

        Returns early (with the remaining wait) when ``stop`` is set or the slot is more than
        ``max_wait`` away (then no slot is taken). A pause that began while waiting sends the
        caller to a new slot after the pause, so the spacing also holds right after a pause.
        ``at_slot`` (quick) runs when the slot has come, before the start is recorded: the
        recorded start stays the real one, so what it does cannot bunch requests.
        """
        while True:
            wait, taken = self.budget.reserve(max_wait)
            if not taken:
                return wait
            if wait > 0:
                if stop is None:
                    time.sleep(wait)
                elif stop.wait(wait):
                    return 0.0
            if at_slot is not None:
                at_slot()
            if not self.paused() and self._admit():
                return None

    def _admit(self) -> bool:
        """Record a request start now, unless the last second already holds ``rate`` of them."""
        with self._lock:
            now = self.clock()
            while self._starts and self._starts[0] <= now - 1.0:
                self._starts.popleft()
            if len(self._starts) < self._cap:
                self._starts.append(now)
                return True
            oldest = self._starts[0]
        # Full: the next slot comes when the oldest start leaves the window.
        self.budget.hold(oldest + 1.0 - now)
        return False

    def paused(self) -> bool:
        """True while a pause (``pause_until``) is in force."""
        with self._lock:
            return self._paused_until > self.clock()

    def pause_until(self, when: float) -> None:
        """No slot before ``when`` (this process's monotonic seconds)."""
        with self._lock:
            self._paused_until = max(self._paused_until, when)
            hold = when - self.clock()
        self.budget.hold(hold)
