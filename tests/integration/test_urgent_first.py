"""Urgent first, nothing stale (spec section 10): claim order, superseded and expired messages, ValidityPeriod."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from alerts import priority
from service.db import schema
from service.dispatch import expansion, outbox
from tests.integration.test_dispatch import Alerts, _no_twilio_edge, _stop_dispatchers, add, dispatcher, fake, rows  # noqa: F401
from tests.integration.test_dispatch import twilio_services

n = schema.notifications


def queue(services, kind: str, rank: int, created_at: datetime, phone: str) -> int:
    """A pending notification of ``kind`` at ``rank``, as the outbox writes one."""
    with services.engine.begin() as conn:
        return conn.execute(sa.insert(n).values(
            phone=phone, language="id", kind=kind, body=f"{kind} {rank}", status="pending", priority=rank,
            attempts=0, created_at=created_at, updated_at=created_at).returning(n.c.id)).scalar_one()


def move_alert(services, alert: Alerts, **values) -> None:
    """Change the alert as the engine does when it escalates or closes it."""
    with services.engine.begin() as conn:
        conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == alert.id).values(**values))


def test_the_claim_takes_the_most_urgent_first_then_the_oldest(database_url, fake):
    services = twilio_services(database_url, fake)
    t0 = datetime.now(timezone.utc) - timedelta(minutes=5)
    queued = [("broadcast", priority.priority("broadcast"), 0), ("warning", priority.priority("warning", "waspada"), 1),
              ("operational", priority.priority("operational"), 2), ("warning", priority.priority("warning", "awas"), 3),
              ("reminder", priority.priority("reminder"), 4), ("warning", priority.priority("warning", "awas"), 5),
              ("broadcast", priority.priority("broadcast"), 6), ("warning", priority.priority("warning", "siaga"), 7)]
    ids = {queue(services, kind, rank, t0 + timedelta(seconds=age), f"+6281200000{i:03d}"): (rank, age)
           for i, (kind, rank, age) in enumerate(queued)}
    claimed = [ids[row.id] for row in outbox.claim(services.engine, "me-1", 3, datetime.now(timezone.utc))]
    claimed += [ids[row.id] for row in outbox.claim(services.engine, "me-1", 10, datetime.now(timezone.utc))]
    assert claimed == sorted(ids.values())  # by rank, then by creation
    assert claimed[:2] == [(0, 3), (0, 5)]


def test_at_its_slot_a_sender_takes_a_more_urgent_row_queued_after_its_claim(database_url, fake):
    services = twilio_services(database_url, fake)
    now = datetime.now(timezone.utc)
    queue(services, "broadcast", priority.priority("broadcast"), now - timedelta(minutes=1), "+6281200000001")
    (broadcast,) = outbox.claim(services.engine, "me-1", 1, now)
    awas = queue(services, "warning", priority.priority("warning", "awas"), now, "+6281200000002")
    taken = outbox.more_urgent(services.engine, broadcast, "me-1", now)
    assert taken.id == awas
    assert [(r.id, r.status) for r in rows(services)] == [(broadcast.id, "pending"), (awas, "sending")]
    assert rows(services)[0].attempts == 0  # given back as if never claimed


def test_a_broadcast_is_not_handed_over_while_another_sender_holds_a_more_urgent_row_not_yet_sent(database_url, fake):
    # Near the end of a desa's warnings: the last one is claimed by another sender whose slot comes later;
    # this sender's slot comes first, holding a broadcast. It must give its slot up, not send ahead of the warning.
    services = twilio_services(database_url, fake)
    now = datetime.now(timezone.utc)
    broadcast = queue(services, "broadcast", priority.priority("broadcast"), now - timedelta(minutes=1), "+6281200000001")
    awas = queue(services, "warning", priority.priority("warning", "awas"), now, "+6281200000002")
    (held,) = outbox.claim(services.engine, "other-sender", 1, now)
    assert held.id == awas
    d = dispatcher(services)
    d.run_once()  # claims the broadcast; at its slot the warning is still the other sender's, unsent
    assert fake.creates() == []
    assert [(r.id, r.status, r.attempts) for r in rows(services)] == [(broadcast, "pending", 0), (awas, "sending", 1)]
    outbox.mark_sent(services.engine, awas, "twilio", "SM0000000000000000000000000000000a", "sent", now)
    assert d.run_until_idle() == {}  # handed over: now the broadcast goes
    assert [r.form["To"] for r in fake.creates()] == ["+6281200000001"]


def test_a_more_urgent_row_claimed_long_ago_holds_no_slot_back(database_url, fake):
    # A row in 'sending' claimed long before is at the provider already or was left by a dead sender (recovery's).
    services = twilio_services(database_url, fake)
    now = datetime.now(timezone.utc)
    queue(services, "warning", priority.priority("warning", "awas"), now - timedelta(minutes=5), "+6281200000002")
    outbox.claim(services.engine, "dead-sender", 1, now - timedelta(minutes=1))
    queue(services, "broadcast", priority.priority("broadcast"), now, "+6281200000001")
    (broadcast,) = outbox.claim(services.engine, "me-1", 1, now)
    assert outbox.more_urgent(services.engine, broadcast, "me-1", now) is broadcast


def test_a_queued_waspada_of_an_alert_that_reached_awas_is_superseded(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    alert = Alerts(services)
    d = dispatcher(services)
    alert.event("raised", "waspada", 1.9, 0.3)
    d.expand()
    alert.event("escalated", "awas", 3.2, 0.4, minutes=30)
    move_alert(services, alert, level="awas")
    assert d.run_until_idle() == {}
    assert [(r.kind, r.status) for r in rows(services)] == [("warning", "superseded"), ("warning", "sent")]
    (sent,) = fake.accepted()
    assert "AWAS" in sent["body"] and "WASPADA" not in sent["body"]


def test_a_warning_of_a_closed_alert_is_superseded_and_its_all_clear_goes_only_to_those_warned(database_url, fake):
    services = twilio_services(database_url, fake)
    warned = add(services, "0812-1111-0001")
    alert = Alerts(services)
    d = dispatcher(services)
    alert.event("raised", "siaga", 2.5, 0.3)
    assert d.run_until_idle() == {}
    late = add(services, "0812-1111-0002")  # registered after the warning went out
    alert.event("escalated", "awas", 3.1, 0.3, minutes=20)
    d.expand()
    alert.event("cleared", "normal", 1.5, -0.2, minutes=60)
    move_alert(services, alert, state="closed", level="normal")
    assert d.run_until_idle() == {}
    got = {(r.subscriber_id, r.kind, r.status) for r in rows(services)}
    assert got == {(warned, "warning", "sent"), (warned, "warning", "superseded"), (late, "warning", "superseded"),
                   (warned, "all_clear", "sent"), (late, "all_clear", "superseded")}
    assert {m["to"] for m in fake.accepted()} == {"+6281211110001"}


def test_a_warning_not_handed_over_within_its_validity_is_expired(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.5)
    long_ago = datetime.now(timezone.utc) - timedelta(hours=2)  # expanded, then the provider refused for 2 h
    expansion.expand_events(services.engine, dispatcher(services).templates, services.settings.tz, long_ago,
                         validity_s=services.settings.sms_validity_s)
    assert dispatcher(services).run_until_idle() == {}
    ((status, valid_until),) = [(r.status, r.valid_until) for r in rows(services)]
    assert status == "expired" and valid_until == long_ago + timedelta(seconds=3600)
    assert fake.creates() == []


def test_twilio_receives_the_warnings_validity_and_none_for_a_broadcast(database_url, fake):
    services = twilio_services(database_url, fake, EWS_SMS_VALIDITY_S="900")
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.5)
    queue(services, "broadcast", priority.priority("broadcast"), datetime.now(timezone.utc), "+6281211110009")
    assert dispatcher(services).run_until_idle() == {}
    validity = {r.form["To"]: r.form.get("ValidityPeriod") for r in fake.creates()}
    assert validity["+6281211110009"] is None
    assert 890 <= int(validity["+6281211110001"]) <= 900
