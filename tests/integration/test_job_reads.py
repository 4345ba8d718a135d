"""The scheduled passes look before they write: with nothing due they never queue for SQLite's write lock.

On SQLite every transaction of this service begins IMMEDIATE (one writer at a time, in turns:
service/db/turns.py), so a pass that only reads would wait behind an ingest batch and make the
next batch wait behind it, every 30 s for each job. Their look-ups run ``reads_only`` (DEFERRED,
side by side with the writer in WAL mode); only what is due takes a write turn.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from service import alerting, exercises, leader, maintenance
from service.db import schema
from service.dispatch import outbox
from tests.support.services import make_services

PASSES = {
    "offline check": lambda engine, now: alerting.check_offline(engine, now),
    "overdue doubtful samples": lambda engine, now: alerting.judge_overdue(engine, now),
    "AWAS reminders": lambda engine, now: alerting.remind_awas(engine, now),
    "ended maintenance windows": lambda engine, now: maintenance.announce_ended(engine, now),
    "ended exercises": lambda engine, now: exercises.end_due(engine, now),
    "the scheduler's lease holder": lambda engine, now: leader.current_holder(engine),
    "notification counts": lambda engine, now: outbox.counts(engine),
}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    services = make_services(f"sqlite:///{tmp_path_factory.mktemp('jobs') / 'ews.db'}")
    yield services
    services.engine.dispose()


@pytest.mark.parametrize("name", PASSES)
def test_a_quiet_pass_finishes_while_an_ingest_batch_holds_the_write_lock(services, name):
    engine, now = services.engine, services.clock()
    done = threading.Event()
    with engine.begin() as conn:  # an ingest batch in the middle of its transaction
        conn.execute(sa.update(schema.station_state).values(updated_at=now))
        thread = threading.Thread(target=lambda: (PASSES[name](engine, now), done.set()), daemon=True)
        thread.start()
        finished = done.wait(10)  # the busy timeout is 30 s: a pass that queued would still be waiting
    thread.join(30)
    assert finished, f"{name}: the pass waited for the write lock although nothing was due"
