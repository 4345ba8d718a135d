"""The life of one alert's CAP chain: which message is due now, of what type, and when to renew it. Pure.

A chain is the messages issued for one alert, in order (``number`` 1, 2, ...):

- the first state-changing event opens it with an ``Alert``; each later one is an ``Update``
  (an event issued late, e.g. after a restart, is folded into one message carrying the
  newest state: consumers need the current state, not a replay);
- a ``cleared`` or ``closed`` event, or an alert found closed, ends it with a ``Cancel``;
- while the alert is active, an ``Update`` carrying the same state renews the newest message
  when two thirds of its validity have passed, so a third is left: more than the quarter the
  contract asks, so a renewal that runs late by a twelfth of the validity is still in time,
  and no consumer ever shows a flood that lasts a day as expired.

Each message is ``sent`` at least one second after the one before it (CAP times are whole
seconds; consumers order messages by ``sent``) and ``expires`` ``expires_s`` after that. An
``Update`` or ``Cancel`` references the chain's first message and every earlier one not yet
expired when it is sent (Google Public Alerts' rule), so the list stays short in a long flood.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from alerts.cap import CapAlert, CapEvent

CAP_EVENT_TYPES = ("raised", "escalated", "deescalated", "cleared", "closed")
CANCEL_EVENT_TYPES = ("cleared", "closed")
RENEW_AFTER = 2 / 3  # of a message's validity
MIN_STEP = timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class Issued:
    """A message already issued for the alert (a ``cap_messages`` row, without its XML)."""

    number: int
    event_id: int
    msg_type: str
    identifier: str
    sent: datetime
    expires: datetime


@dataclasses.dataclass(frozen=True)
class Due:
    """The next message of a chain: what it carries and how it is dated."""

    event: CapEvent
    msg_type: str
    number: int
    sent: datetime
    expires: datetime
    first_for_event: bool
    references: tuple[Issued, ...]
    renewal: bool


def renewal_time(message: Issued) -> datetime:
    """When ``message`` must be renewed: two thirds into its validity."""
    return message.sent + (message.expires - message.sent) * RENEW_AFTER


def state_events(events: Sequence[CapEvent]) -> list[CapEvent]:
    """The events that change what the public is told, in the order they were recorded."""
    return sorted((e for e in events if e.type in CAP_EVENT_TYPES), key=lambda e: e.id)


def due_message(alert: CapAlert, events: Sequence[CapEvent], issued: Sequence[Issued], now: datetime,
                expires_s: int) -> Due | None:
    """The message the chain needs at ``now``, or None when it is up to date."""
    changes = state_events(events)
    last = issued[-1] if issued else None
    if not changes or (last is not None and last.msg_type == "Cancel"):
        return None  # nothing public yet, or the chain has ended
    newest = changes[-1]
    pending = last is None or newest.id > last.event_id
    ended = newest.type in CANCEL_EVENT_TYPES or alert.state != "active"
    if last is None and ended:
        return None  # opened and closed before anything was issued: there is no warning to cancel
    if ended:
        msg_type = "Cancel"
    elif pending:
        msg_type = "Alert" if last is None else "Update"
    elif now >= renewal_time(last):
        msg_type = "Update"
    else:
        return None
    sent = now if last is None else max(now, last.sent + MIN_STEP)
    return Due(event=newest, msg_type=msg_type, number=(last.number + 1) if last else 1, sent=sent,
               expires=sent + timedelta(seconds=expires_s),
               first_for_event=last is None or newest.id != last.event_id,
               references=references_at(issued, sent), renewal=not pending and not ended)


def references_at(issued: Sequence[Issued], sent: datetime) -> tuple[Issued, ...]:
    """The earlier messages a message sent at ``sent`` references: the first, and all unexpired."""
    return tuple(m for i, m in enumerate(issued) if i == 0 or m.expires > sent)


def next_renewal(alert_state: str, issued: Sequence[Issued]) -> datetime | None:
    """When the chain next needs a renewal (None when it has ended or never began)."""
    if alert_state != "active" or not issued or issued[-1].msg_type == "Cancel":
        return None
    return renewal_time(issued[-1])
