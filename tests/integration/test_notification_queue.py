"""``GET /api/v1/notifications/queue``: what is not yet handed to the provider, by priority, most urgent first."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from service import subscribers
from service.bootstrap import sms_dispatcher
from service.db import schema
from service.dispatch import ConsoleProvider
from tests.support.api import make_harness


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url)
    now = harness.services.clock()
    with harness.services.engine.begin() as conn:
        for n in range(3):
            subscribers.create(conn, {"phone": f"0812-2222-000{n}", "areas": [{"kecamatan": "Malili"}]}, now)
    yield harness
    harness.services.engine.dispose()


def queued(api, priority: int, status: str, created_at) -> None:
    """One notification of ``priority`` in ``status`` (as the outbox writes them)."""
    with api.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.notifications).values(
            phone="+6281200000000", language="id", kind="warning", body="-", status=status, priority=priority,
            created_at=created_at, updated_at=created_at))


def test_the_queue_counts_unsent_messages_by_priority_urgent_first(api):
    now = api.services.clock()
    broadcast = api.call("POST", "/api/v1/broadcasts", role="operator",
                         json={"message": "Kerja bakti besok", "areas": [{"kecamatan": "Malili"}]})
    assert broadcast.status_code == 202, broadcast.get_data(as_text=True)
    with open("/dev/null", "w") as sink:
        sms_dispatcher(api.services, ConsoleProvider(stream=sink)).expand()  # the outbox writes its messages
    queued(api, 0, "pending", now - timedelta(seconds=30))
    queued(api, 0, "sending", now - timedelta(seconds=90))
    queued(api, 1, "sent", now - timedelta(seconds=10))  # handed over: no longer queued
    queued(api, 2, "superseded", now)  # never sent: not queued either

    answer = api.call("GET", "/api/v1/notifications/queue", role="viewer")
    assert answer.status_code == 200
    doc = answer.get_json()
    assert [p["priority"] for p in doc["priorities"]] == list(range(8))
    assert [p["name"] for p in doc["priorities"]] == ["warning_awas", "warning_siaga", "warning_waspada", "reminder",
                                                      "reply", "broadcast", "operational", "exercise"]
    awas, siaga, broadcasts = doc["priorities"][0], doc["priorities"][1], doc["priorities"][5]
    assert (awas["queued"], awas["pending"], awas["sending"]) == (2, 1, 1)
    assert awas["oldest_created_at"].startswith((now - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M"))
    assert siaga["queued"] == 0 and siaga["oldest_created_at"] is None
    assert broadcasts["queued"] == broadcast.get_json()["recipients"] == 3
    assert doc["total"] == 5
    assert "+62" not in answer.get_data(as_text=True)  # counts only


def test_the_queue_needs_a_staff_token(api):
    assert api.call("GET", "/api/v1/notifications/queue", role=None).status_code == 401
    assert api.call("GET", "/api/v1/notifications/queue", role="gateway").status_code == 403
