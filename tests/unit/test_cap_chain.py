"""When a CAP message is due: renewals before expiry, Cancels, catch-up after a pause."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.cap import CapAlert, CapEvent
from alerts.cap_chain import Issued, due_message, next_renewal, references_at, renewal_time

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
V = 60  # EWS_CAP_EXPIRES_S at its minimum


def alert(state="active"):
    return CapAlert(id=1, station_id="S", kind="water_level", level="awas", state=state, opened_at=T0)


def event(id_, type_="raised", level="awas", at=T0):
    return CapEvent(id=id_, type=type_, level=level, at=at, recorded_at=at)


def record(due, issued):
    issued.append(Issued(number=due.number, event_id=due.event.id, msg_type=due.msg_type,
                         identifier=f"m{due.number}", sent=due.sent, expires=due.expires))
    return issued[-1]


def test_nothing_is_due_before_the_first_event_or_between_renewals():
    assert due_message(alert(), [], [], T0, V) is None
    issued = []
    first = record(due_message(alert(), [event(1)], issued, T0, V), issued)
    assert first.msg_type == "Alert" and first.expires == T0 + timedelta(seconds=V)
    assert due_message(alert(), [event(1)], issued, T0 + timedelta(seconds=39), V) is None
    assert next_renewal("active", issued) == T0 + timedelta(seconds=40)


def test_an_active_alert_is_renewed_with_an_update_carrying_the_same_state():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    due = due_message(alert(), [event(1)], issued, renewal_time(issued[-1]), V)
    assert due.msg_type == "Update" and due.renewal and due.event.id == 1 and not due.first_for_event
    assert due.sent < issued[-1].expires - timedelta(seconds=V / 4)  # a quarter of the validity still left


def test_a_long_alert_is_never_shown_expired_when_renewed_at_each_renewal_time():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    for _ in range(100):  # 100 renewals: more than an hour at 60 s validity
        now = next_renewal("active", issued)
        previous = issued[-1]
        renewed = record(due_message(alert(), [event(1)], issued, now, V), issued)
        assert previous.sent < renewed.sent < previous.expires
    # references stay short: the first message and the unexpired ones only
    assert len(references_at(issued, issued[-1].sent + timedelta(seconds=1))) <= 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30))
def test_running_late_by_up_to_a_twelfth_still_leaves_a_quarter(lateness):
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    for late in lateness:
        previous = issued[-1]
        now = renewal_time(previous) + timedelta(seconds=late * V / 12)
        renewed = record(due_message(alert(), [event(1)], issued, now, V), issued)
        assert previous.expires - renewed.sent >= timedelta(seconds=V / 4)


def test_events_issued_late_fold_into_one_message_with_the_newest_state():
    events = [event(1, at=T0), event(2, "escalated", "siaga", T0 + timedelta(seconds=5)),
              event(3, "escalated", "awas", T0 + timedelta(seconds=9))]
    issued = []
    record(due_message(alert(), events[:1], issued, T0, V), issued)
    due = due_message(alert(), events, issued, T0 + timedelta(seconds=10), V)
    assert due.msg_type == "Update" and due.event.id == 3 and due.first_for_event and not due.renewal
    assert [r.identifier for r in due.references] == ["m1"]


def test_sent_always_moves_forward_by_at_least_a_second():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    due = due_message(alert(), [event(1), event(2, "escalated")], issued, T0, V)
    assert due.sent == T0 + timedelta(seconds=1)


def test_cleared_cancels_and_ends_the_chain():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    events = [event(1), event(2, "cleared", "normal")]
    cancel = record(due_message(alert("closed"), events, issued, T0 + timedelta(seconds=20), V), issued)
    assert cancel.msg_type == "Cancel"
    assert due_message(alert("closed"), events, issued, T0 + timedelta(hours=1), V) is None
    assert next_renewal("closed", issued) is None


def test_an_alert_found_closed_without_a_closing_event_is_cancelled():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    due = due_message(alert("closed"), [event(1)], issued, T0 + timedelta(seconds=5), V)
    assert due.msg_type == "Cancel" and not due.first_for_event


def test_an_alert_opened_and_closed_before_anything_was_issued_has_no_chain():
    events = [event(1), event(2, "cleared", "normal")]
    assert due_message(alert("closed"), events, [], T0, V) is None


def test_an_expired_message_is_renewed_at_once_after_a_pause():
    issued = []
    record(due_message(alert(), [event(1)], issued, T0, V), issued)
    later = T0 + timedelta(hours=3)  # the service was stopped
    due = due_message(alert(), [event(1)], issued, later, V)
    assert due.msg_type == "Update" and due.sent == later
