"""The deployment's SMS budget (service/dispatch/rate.py) on real databases.

On PostgreSQL every instance reserves from the ``sms_budget`` row: two engines stand for two
instances. On SQLite (one instance) the budget is the process's own.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from service.db import schema
from service.dispatch import LocalBudget, Pace, RateLimiter, SharedBudget, deployment_limiter
from tests.support.infra import fresh_database, postgres_base_url
from tests.support.services import make_services

needs_postgres = pytest.mark.skipif(not postgres_base_url(), reason="PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")


@pytest.fixture
def postgres_url(tmp_path):
    with fresh_database("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
def instances(postgres_url):
    """Two instances' engines on one migrated PostgreSQL database."""
    engines = [make_services(postgres_url, seed=None, instance_id=f"rate-{i}").engine for i in range(2)]
    yield engines
    for engine in engines:
        engine.dispose()


def next_slot(engine) -> float:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.sms_budget.c.next_slot)).scalar_one()


@pytest.mark.postgres
@needs_postgres
def test_two_instances_draw_distinct_slots_one_interval_apart_from_one_budget(instances):
    budgets = [SharedBudget(engine, Pace(1.05)) for engine in instances]  # slots 1 s apart
    slots, lock = [], threading.Lock()

    def reserve(budget):
        for _ in range(3):
            wait, taken, _ = budget.reserve()
            assert taken
            with lock:
                slots.append(time.monotonic() + wait)

    threads = [threading.Thread(target=reserve, args=(b,)) for b in budgets for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    assert len(slots) == 12
    # One second apart, whichever instance took them (the database's clock: the error is a round trip).
    assert all(b - a == pytest.approx(1.0, abs=0.1) for a, b in zip(slots, slots[1:])), slots


@pytest.mark.postgres
@needs_postgres
def test_a_slot_too_far_away_is_not_taken_and_a_hold_applies_to_every_instance(instances):
    a, b = (SharedBudget(engine, Pace(1.05)) for engine in instances)
    for _ in range(10):
        assert a.reserve()[1]
    before = next_slot(instances[0])
    wait, taken, _ = b.reserve(max_wait=5.0)
    assert not taken and wait == pytest.approx(10.0, abs=0.5)
    assert next_slot(instances[0]) == before  # nothing reserved
    assert a.delay() == pytest.approx(10.0, abs=0.5)

    a.hold(30.0)  # a 429 with Retry-After: 30 at one instance
    assert b.delay() == pytest.approx(30.0, abs=0.5)
    wait, taken, _ = b.reserve()
    assert taken and wait == pytest.approx(30.0, abs=0.5)


@pytest.mark.postgres
@needs_postgres
def test_the_budget_row_is_made_when_missing_and_starts_free(instances):
    with instances[0].begin() as conn:
        conn.execute(sa.delete(schema.sms_budget))
    wait, taken, _ = SharedBudget(instances[1], Pace(2.1)).reserve()
    assert taken and wait == pytest.approx(0.0, abs=0.05)
    with instances[0].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.sms_budget)).scalar_one() == 1


@pytest.mark.postgres
@needs_postgres
def test_two_limiters_on_one_database_let_no_more_than_the_rate_through_in_any_second(instances):
    limiters = [deployment_limiter(engine, 20) for engine in instances]
    assert all(isinstance(limiter.budget, SharedBudget) for limiter in limiters)
    grants, lock = [], threading.Lock()

    def worker(limiter):
        for _ in range(10):
            assert limiter.acquire() is None
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(limiter,)) for limiter in limiters for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grants.sort()
    in_any_second = max(sum(1 for t in grants[i:] if t - start < 1.0) for i, start in enumerate(grants))
    assert len(grants) == 60 and in_any_second <= 20
    assert time.monotonic() - started >= 59 * 1.05 / 20 - 0.1  # the two together, not each, at 20/s


def test_on_sqlite_the_budget_is_the_one_instances_own(sqlite_url):
    engine = make_services(sqlite_url, seed=None).engine
    try:
        limiter = deployment_limiter(engine, 20)
        assert isinstance(limiter.budget, LocalBudget)
        assert limiter.interval == pytest.approx(1.04 / 20) and limiter.budget.pace.window == pytest.approx(1.04)
    finally:
        engine.dispose()


def test_starts_count_at_their_slots_so_threads_that_woke_late_are_not_refused():
    # Slots one interval apart, every third thread woke 9 ms late: counted when they woke, the window
    # would hold one start too many and refuse the slot (a slot lost); counted at their slots, none is.
    clock = [100.0]
    limiter = RateLimiter(10, clock=lambda: clock[0], margin=0.04)
    for i in range(60):
        slot = 100.0 + i * limiter.interval
        clock[0] = slot + (0.009 if i % 3 == 0 else 0.0)
        assert limiter._admit(slot), i


def test_slots_too_dense_for_the_window_are_refused_until_the_oldest_leaves_it():
    clock = [100.0]
    limiter = RateLimiter(5, clock=lambda: clock[0], margin=0.05)  # at most 5 starts in any 1.05 s
    assert all(limiter._admit(100.0 + i * 0.1) for i in range(5))  # a budget handing out slots too close
    assert not limiter._admit(100.5)
    assert limiter.delay() == pytest.approx(1.05)  # the next slot: when the first start is 1.05 s old
    assert limiter._admit(101.06)


def test_a_slot_woken_for_too_late_is_given_up_for_the_next_one():
    clock = [100.0]
    limiter = RateLimiter(20, clock=lambda: clock[0], margin=0.05)
    calls = []

    def slow_check():  # the check before the slot took 100 ms: sent now, it would bunch with the next
        calls.append(clock[0])
        if len(calls) == 1:
            clock[0] += 0.1

    assert limiter.acquire(at_slot=slow_check) is None
    assert limiter.late == 1
    assert len(calls) == 1  # the next slot was due at once: no time to check again (a slow check would miss it too)
    assert limiter.budget.delay() == pytest.approx(1.05 / 20)  # two slots taken, the first unused
