"""The SMS rate: at most ``EWS_SMS_MAX_PER_SECOND`` requests reach the provider in any second.

A *budget* hands out request slots ``interval`` apart, like a GCRA: it keeps the next free slot
(a theoretical arrival time) and each reservation moves it one interval on. ``SharedBudget``
(service/dispatch/shared_budget.py) keeps it in one database row that every instance of a
PostgreSQL deployment reserves from; ``LocalBudget`` keeps it in memory for the one sending
process of a SQLite deployment.

The ``RateLimiter`` is the waiting side, one per process, shared by its sender threads: a
thread reserves a slot, does its last checks just before it, sleeps until it comes and sends.
A thread that wakes more than ``late_after`` after its slot (a busy machine) gives it up and
takes the next free one: sent late, it would go out together with the next slot's request,
perhaps another instance's. This process's own starts are also capped at ``rate`` in any
sliding window of ``1 + margin`` seconds. See docs/sms.md ("One rate for the deployment").
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time

from sqlalchemy.engine import Engine

from service.db import dialect
from service.dispatch.shared_budget import SharedBudget

# Slots are 1.04 / rate apart in one process: up to 40 ms of jitter between a slot and its request's
# arrival at the provider cannot put more than the rate into one second there. A wider margin costs its
# share of the rate (at 200/s the fan-out must keep 95 % of the limit).
MARGIN = 0.04
# Several instances (a shared budget) add jitter one process does not see: another process's wake-up
# next to ours, a clock offset to the database. There slots are 1.06 / rate apart (60 ms).
SHARED_MARGIN = 0.06
EDGE = 0.001  # s: a start this close to a window's edge counts outside it

# s: ``acquire``'s ``at_slot`` (the more-urgent check, a database round trip) runs this long before the slot.
# Measured on a machine at load 10: the check took 17 ms at the median, 45 ms at p90, 90 ms at p99; 30 ms
# before the slot, it made a third of the senders late for their slots (given up: 20 % slower).
AT_SLOT_LEAD = 0.1


@dataclasses.dataclass(frozen=True)
class Pace:
    """``rate`` requests a second, with a ``margin`` for jitter on the way to the provider."""

    rate: float
    margin: float = MARGIN

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")

    @property
    def interval(self) -> float:
        """Seconds between two slots."""
        return (1.0 + self.margin) / self.rate

    @property
    def window(self) -> float:
        """The sliding window (seconds) that holds at most ``cap`` of a process's starts."""
        return 1.0 + self.margin

    @property
    def cap(self) -> int:
        """Starts of one process admitted in any ``window``."""
        return max(1, int(self.rate))

    @property
    def late_after(self) -> float:
        """How late (seconds) a sender may wake for its slot: a quarter of the margin (the rest is for the
        way to the provider, where a busy machine delays a request most). Measured: allowed half, on a
        machine at load 10 the provider saw 21-24 in a second; a quarter keeps it at the limit."""
        return max(0.005, self.margin / 4)


class LocalBudget:
    """The budget kept in this process: the one sending process of a SQLite deployment."""

    def __init__(self, pace: Pace, clock=time.monotonic) -> None:
        self.pace = pace
        self.clock = clock
        self._next = 0.0  # the theoretical arrival time: the next free slot
        self._lock = threading.Lock()

    def reserve(self, max_wait: float | None = None) -> tuple[float, bool, float]:
        """Take the next slot unless it is more than ``max_wait`` away; return (wait, taken, 0: exact)."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            if max_wait is not None and slot - now > max_wait:
                return slot - now, False, 0.0
            self._next = slot + self.pace.interval
            return slot - now, True, 0.0

    def delay(self) -> float:
        """How long the next reservation would wait (without reserving)."""
        with self._lock:
            return max(0.0, self._next - self.clock())

    def hold(self, seconds: float) -> None:
        """No slot in the next ``seconds`` (a 429's Retry-After)."""
        with self._lock:
            self._next = max(self._next, self.clock() + seconds)


def deployment_limiter(engine: Engine, rate: float, on_missed=None) -> "RateLimiter":
    """The limiter of a sending process: its budget is the database's on PostgreSQL (every instance
    draws from it) and its own on SQLite (a SQLite deployment is one instance)."""
    shared = dialect.is_postgresql(engine)
    margin = SHARED_MARGIN if shared else MARGIN
    pace = Pace(rate, margin)
    budget = SharedBudget(engine, pace) if shared else LocalBudget(pace)
    return RateLimiter(rate, margin=margin, budget=budget, on_missed=on_missed)


class RateLimiter:
    """The waiting side of a budget, shared by every sender thread of a process.

    ``acquire()`` reserves the next slot, sleeps until it comes and starts, so request starts
    are ``interval`` apart and never more than ``rate`` fall in any second. ``pause_until()``
    holds every slot back (a 429 with Retry-After applies to the whole account, not to one
    message).
    """

    def __init__(self, rate: float, clock=time.monotonic, margin: float = 0.0, budget=None, on_missed=None) -> None:
        self.pace = Pace(rate, margin)
        self.interval = self.pace.interval
        self.clock = clock
        self.budget = budget if budget is not None else LocalBudget(self.pace, clock)
        self.late_after = self.pace.late_after
        self.late = 0  # slots given up because the sender woke too late for them (a busy machine)
        self._on_missed = on_missed  # told of each (``ews_sms_rate_slots_missed``)
        self._starts: list[float] = []  # this process's recent starts (their slots), in time order
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
        caller to a new slot after the pause. ``at_slot`` (quick) runs just before the slot
        comes (``AT_SLOT_LEAD``), so the time it takes does not delay the request; after a slot
        given up for lateness it runs again only if the next one leaves time for it.
        """
        checked = False
        while True:
            wait, taken, error = self.budget.reserve(max_wait)
            if not taken:
                return wait
            slot = self.clock() + wait
            if error > self.late_after:
                self._missed()
                continue  # the slot's time is not known well enough (a slow round trip): sent, it could bunch
            if at_slot is not None and (not checked or wait > AT_SLOT_LEAD):
                if self._sleep_until(slot - AT_SLOT_LEAD, stop):
                    return 0.0
                at_slot()
                checked = True
            if self._sleep_until(slot, stop):
                return 0.0
            if self._too_late(slot):
                continue  # sent now, it would go out together with the next slot's request
            if not self.paused() and self._admit(slot):
                return None

    def _sleep_until(self, when: float, stop: threading.Event | None) -> bool:
        """Sleep until ``when`` (this limiter's clock); True when ``stop`` was set meanwhile."""
        wait = when - self.clock()
        if wait <= 0:
            return False
        if stop is None:
            time.sleep(wait)
            return False
        return stop.wait(wait)

    def _too_late(self, slot: float) -> bool:
        """True when now is more than ``late_after`` past ``slot`` (counted in ``late``)."""
        if self.clock() - slot <= self.late_after:
            return False
        self._missed()
        return True

    def _missed(self) -> None:
        """Count a slot given up."""
        with self._lock:
            self.late += 1
        if self._on_missed is not None:
            self._on_missed()

    def _admit(self, slot: float) -> bool:
        """Record a start at ``slot``, unless this process's ``window`` before it already holds ``cap`` starts.

        A start counts at its slot's time, not when its thread woke: a sender that woke a few ms late
        (``late_after`` at most) is not closer to the next slot's request than its slot says, and stamped
        at waking it would make the window refuse the next slot for nothing."""
        with self._lock:
            del self._starts[:bisect.bisect_right(self._starts, slot - 2 * self.pace.window)]
            # Slots exactly one window apart are the budget's own spacing (rate x interval = window): not one
            # window, whatever the rounding of the clock offset (``EDGE``).
            first = bisect.bisect_right(self._starts, slot - self.pace.window + EDGE)  # the starts are in order
            if bisect.bisect_right(self._starts, slot) - first < self.pace.cap:
                bisect.insort(self._starts, slot)
                return True
            wait = self._starts[first] + self.pace.window - self.clock()
        self.budget.hold(wait)  # the next slot: when the oldest of them leaves the window
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
