"""The messages beside the readings: a station's status topic and a siren's ack topic, and how a batch is applied."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from service.ingest import database_unavailable

log = logging.getLogger(__name__)

Outcome = TypeVar("Outcome")


@dataclasses.dataclass(frozen=True)
class TopicMessage:
    """One message of a status or ack topic, as it arrived."""

    topic: str
    payload: bytes
    received_at: datetime
    retained: bool = False  # delivered from the broker's store (at subscription), not as it was published


def apply_each(messages: Iterable[TopicMessage], apply_one: Callable[[TopicMessage], Outcome], failure: str, *,
               tolerated: tuple[type[Exception], ...] = ()) -> list[Outcome]:
    """``apply_one`` of every message, in order; the outcomes of those that did not fail.

    An unavailable database propagates (the ingest worker keeps the messages and retries); a
    ``tolerated`` error skips the message quietly; anything else is logged (``failure``, a format
    naming the topic) and never stops the ingest loop.
    """
    outcomes = []
    for message in messages:
        try:
            outcomes.append(apply_one(message))
        except tolerated:
            continue
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.exception(failure, message.topic[:200])
    return outcomes
