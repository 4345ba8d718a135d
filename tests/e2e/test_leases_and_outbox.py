"""Several ``ews run`` instances on one database (issue 9, docs/deploy.md): who leads, and the shared outbox.

What is checked:
- the scheduler lease: one holder at a time, takeover after expiry, immediate handover on release;
- the SMS outbox shared by several dispatchers (``FOR UPDATE SKIP LOCKED``): each message sent once.

Three whole ``ews run`` processes sharing one broker are tests/e2e/test_multi_instance.py.
"""

from __future__ import annotations

import collections
import contextlib
import io
import threading
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from service.db import schema
from service.leader import Lease, current_holder
from tests.support.infra import fresh_database, postgres_base_url
from tests.support.services import make_services

needs_postgres = pytest.mark.skipif(not postgres_base_url(), reason="PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")


@contextlib.contextmanager
def unseeded_services(kind: str, tmp_path):
    """Migrated services on a fresh database of ``kind`` with no stations, for a ``with`` block."""
    with fresh_database(kind, tmp_path) as url:
        services = make_services(url, seed=None)
        try:
            yield services
        finally:
            services.engine.dispose()


# --------------------------------------------------------------------------- the lease


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, needs_postgres])])
def test_one_lease_holder_at_a_time_with_takeover_after_expiry(kind, tmp_path):
    with unseeded_services(kind, tmp_path) as services:
        a = Lease(services.engine, holder="instance-a", ttl=3)
        b = Lease(services.engine, holder="instance-b", ttl=3)
        assert a.try_acquire() and a.is_leader
        assert not b.try_acquire() and not b.is_leader
        assert a.try_acquire()  # renewal
        assert current_holder(services.engine)[0] == "instance-a"
        time.sleep(3.3)  # a stops renewing (it "died"): its lease expires
        assert not a.is_leader  # it stops believing it leads without asking the database
        assert b.try_acquire() and b.is_leader
        assert not a.try_acquire()  # the old holder cannot take it back while b renews
        b.release()  # a clean stop hands over at once
        assert current_holder(services.engine) is None
        assert a.try_acquire()


@pytest.mark.postgres
@needs_postgres
def test_racing_instances_elect_exactly_one_leader(tmp_path):
    with unseeded_services("postgresql", tmp_path) as services:
        for _ in range(5):
            leases = [Lease(services.engine, holder=f"racer-{i}", ttl=5) for i in range(8)]
            barrier = threading.Barrier(len(leases))
            won = []

            def race(lease):
                barrier.wait()
                if lease.try_acquire():
                    won.append(lease.holder)

            threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(won) == 1, won
            assert current_holder(services.engine)[0] == won[0]
            next(lease for lease in leases if lease.holder == won[0]).release()


# --------------------------------------------------------------------------- the shared outbox


@pytest.mark.postgres
@needs_postgres
def test_three_dispatchers_share_the_outbox_and_send_each_message_once(tmp_path):
    from service.bootstrap import sms_dispatcher
    from service.dispatch.providers import ConsoleProvider

    with fresh_database("postgresql", tmp_path) as url:
        seeded = make_services(url, seed=None)
        now = datetime.now(timezone.utc)
        total = 1500
        with seeded.engine.begin() as conn:
            conn.execute(sa.insert(schema.notifications), [
                {"phone": f"+62812{i:07d}", "language": "id", "kind": "broadcast", "body": f"Uji {i}",
                 "status": "pending", "attempts": 0, "created_at": now, "updated_at": now}
                for i in range(total)
            ])
        workers = []
        for i in range(3):
            services = make_services(url, seed=None, instance_id=f"worker-{i}")
            provider = ConsoleProvider(stream=io.StringIO(), keep=total)
            workers.append((services, provider, sms_dispatcher(services, provider, max_per_second=1000)))
        try:
            threads = [threading.Thread(target=d.run_until_idle, kwargs={"timeout": 60}) for _, _, d in workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent = collections.Counter(m["to"] for _, provider, _ in workers for m in provider.sent)
            assert len(sent) == total and set(sent.values()) == {1}
            assert all(len(provider.sent) > 0 for _, provider, _ in workers), "every dispatcher took a share"
            with seeded.engine.connect() as conn:
                by_status = dict(conn.execute(sa.select(schema.notifications.c.status, sa.func.count())
                                              .group_by(schema.notifications.c.status)).all())
                claimed_by = {r[0] for r in conn.execute(sa.select(schema.notifications.c.claimed_by).distinct())}
            assert by_status == {"sent": total}
            assert claimed_by == {"worker-0", "worker-1", "worker-2"}
        finally:
            for services, _, dispatcher in workers:
                dispatcher.stop()
                services.engine.dispose()
            seeded.engine.dispose()
