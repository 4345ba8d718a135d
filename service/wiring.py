"""The small typed values the composition root (service/bootstrap.py) hands to the adapters it builds.

They live here, below every adapter, so that an adapter can name them without importing the root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from service.metrics import Metrics


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(timezone.utc)


def nothing() -> None:
    """A wake-up with no one to wake (the part is not run by this instance)."""


@dataclasses.dataclass(frozen=True)
class Shared:
    """What every adapter shares: the database, the clock, the metrics and this instance's name."""

    engine: Engine
    metrics: Metrics
    clock: Callable[[], datetime] = utc_now
    instance_id: str = "ews"


@dataclasses.dataclass(frozen=True)
class Wakeups:
    """Who to tell that a commit queued work: the SMS dispatcher, the CAP issuer and the siren controller.

    An instance that does not run one of them (``--role ingest``/``api``) keeps ``nothing``: the
    instances that do find the work on their next poll.
    """

    dispatcher: Callable[[], None] = nothing
    cap: Callable[[], None] = nothing
    sirens: Callable[[], None] = nothing  # the siren controller (service/sirens/controller.py), beside the MQTT client

    def events_recorded(self) -> None:
        """New alert events: SMS to expand and send, CAP messages to issue, sirens to command."""
        self.dispatcher()
        self.cap()
        self.sirens()
