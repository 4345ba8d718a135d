"""The SMS budget of a PostgreSQL deployment: one row of ``sms_budget`` that every instance draws from.

The row holds the next free request slot (``next_slot``, a GCRA's theoretical arrival time);
each reservation moves it one interval on. Each operation is one statement on that row, so the
row lock orders the instances, and every time in it is the database's clock
(``clock_timestamp()``, read inside the statement, after any wait for the lock): the instances'
own clocks never matter. An instance that dies holds nothing: its reserved slots pass unused.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.db import dialect
from service.db.schema import sms_budget

log = logging.getLogger(__name__)
NOW = "extract(epoch FROM clock_timestamp())::float8"
NO_LIMIT = 1e9  # max_wait when the caller waits for any slot

# Take the next slot unless it is more than :max_wait away; either way, say when it is, and the time now.
_RESERVE = sa.text(f"""
WITH taken AS (
    UPDATE sms_budget SET next_slot = GREATEST(next_slot, {NOW}) + :interval
    WHERE name = :name AND next_slot - {NOW} <= :max_wait
    RETURNING next_slot - :interval AS slot
)
SELECT slot, true, {NOW} FROM taken
UNION ALL
SELECT GREATEST(next_slot, {NOW}), false, {NOW} FROM sms_budget
WHERE name = :name AND NOT EXISTS (SELECT 1 FROM taken)
""")
_HOLD = sa.text(f"UPDATE sms_budget SET next_slot = GREATEST(next_slot, {NOW} + :seconds) WHERE name = :name")
_DELAY = sa.text(f"SELECT GREATEST(next_slot - {NOW}, 0) FROM sms_budget WHERE name = :name")


class SharedBudget:
    """Request slots for the whole deployment, kept in the ``sms_budget`` row (PostgreSQL)."""

    def __init__(self, engine: Engine, pace, name: str = "sms", clock=time.monotonic) -> None:
        self.engine = engine
        self.pace = pace
        self.name = name
        self.clock = clock
        self._offset = _Offset()

    def reserve(self, max_wait: float | None = None) -> tuple[float, bool, float]:
        """Take the next slot unless it is more than ``max_wait`` away; return (wait from now, taken, how far
        that wait may be off: half the quickest recent round trip, in which the database read its clock)."""
        params = {"name": self.name, "interval": self.pace.interval,
                  "max_wait": NO_LIMIT if max_wait is None else max_wait}
        try:
            rows, asked, answered = self._rows(_RESERVE, params)
        except SQLAlchemyError as exc:
            log.warning("cannot reserve an SMS slot (%s); trying again in a second", type(exc).__name__)
            return 1.0, False, 0.0
        slot, taken, db_now = rows[0]
        offset, error = self._offset.update(db_now, asked, answered)
        return max(0.0, slot - offset - self.clock()), bool(taken), error

    def delay(self) -> float:
        """How long the next reservation would wait (without reserving)."""
        try:
            return float(self._rows(_DELAY, {"name": self.name})[0][0][0])
        except SQLAlchemyError:
            return 0.0  # the reservation itself will say

    def hold(self, seconds: float) -> None:
        """No slot for any instance in the next ``seconds`` (a 429's Retry-After is the whole account's)."""
        try:
            self._rows(_HOLD, {"name": self.name, "seconds": seconds})
        except SQLAlchemyError as exc:
            log.warning("cannot hold the SMS budget back (%s)", type(exc).__name__)

    def _rows(self, statement, params) -> tuple[list, float, float]:
        """The rows ``statement`` gives on the budget's row (created the first time: it starts free), and when
        the statement was sent and answered."""
        for _ in range(2):
            # One statement, in autocommit: one round trip, so the slot's time is known to within it.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                asked = self.clock()  # after the pool's checkout (and its ping)
                result = conn.execute(statement, params)
                rows = result.all() if result.returns_rows else [()] * result.rowcount
                answered = self.clock()
                if rows:
                    return rows, asked, answered
                conn.execute(dialect.insert_new(conn, sms_budget).values(name=self.name, next_slot=0.0))
        raise RuntimeError(f"the sms_budget row {self.name!r} cannot be created")


class _Offset:
    """The database's clock minus this process's monotonic one, from the quickest recent round trip.

    Each reservation is a sample: the database read its clock somewhere between asking and the
    answer, so the middle is off by at most half the round trip. The quickest sample of the last
    ``keep`` seconds wins (a slow round trip, a busy moment, says little), so a slot's local time
    is known to within a fraction of a millisecond whatever this statement's own round trip was.
    """

    def __init__(self, keep: float = 10.0) -> None:
        self.keep = keep
        # (offset, half round trip, when), the quickest first: each sample drops the slower ones before it,
        # which can never be the quickest again; the head leaves once older than ``keep``.
        self._samples: collections.deque[tuple[float, float, float]] = collections.deque()
        self._lock = threading.Lock()

    def update(self, db_now: float, asked: float, answered: float) -> tuple[float, float]:
        """Add a sample; return the offset to use and how far it may be off."""
        sample = (db_now - (asked + answered) / 2, (answered - asked) / 2, answered)
        with self._lock:
            samples = self._samples
            while samples and samples[-1][1] >= sample[1]:
                samples.pop()
            samples.append(sample)
            while answered - samples[0][2] > self.keep:
                samples.popleft()
            return samples[0][0], samples[0][1]
