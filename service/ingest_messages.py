"""What the ingest takes and gives: one message, what became of it, and the dead letter of a rejected one.

Both ingest steps use these: the real readings (``service.ingest``) and the drill readings
(``service.exercise_ingest``), which the real one hands its exercise topics to.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from alerts.model import Rejection, Sample
from service import dead_letters

STATION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class Message:
    """One payload as it arrived: from MQTT (topic) or HTTP (station in the path)."""

    topic: str
    payload: bytes
    received_at: datetime
    source: str = "mqtt"
    station_id: str | None = None  # set for HTTP; parsed from the topic for MQTT
    replay: bool = False  # from ``ews dead-letters replay``: its rejections are no new dead letters


# Every field's default, in field order, for ``mqtt_reading``.
_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Message)}


def mqtt_reading(topic: str, payload: bytes, received_at: datetime) -> Message:
    """``Message(topic, payload, received_at)``: what the MQTT worker builds for each reading it takes.

    A frozen dataclass's ``__init__`` sets each of the six fields through ``object.__setattr__``
    (a third of the worker's own time per message); the same fields go into the instance's
    dictionary at once instead: an equal object, every field in order.
    """
    message = object.__new__(Message)
    fields = message.__dict__
    fields.update(_DEFAULTS)
    fields["topic"], fields["payload"], fields["received_at"] = topic, payload, received_at
    return message


@dataclasses.dataclass
class IngestResult:
    """What became of one message."""

    station_id: str | None
    accepted: list[Sample] = dataclasses.field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejection] = dataclasses.field(default_factory=list)
    events: list[dict] = dataclasses.field(default_factory=list)
    indexes: list[int] = dataclasses.field(default_factory=list)  # payload index of each parsed sample


def database_unavailable(exc: BaseException) -> bool:
    """True when the database could not do the work at all: retry the batch later, acknowledge nothing.

    Lost or refused connections, a locked SQLite file, deadlocks, timeouts and a full disk are
    ``OperationalError``/``InterfaceError`` (or a pool timeout). A ``DataError``,
    ``IntegrityError`` and the like mean the database refused *this* data: retrying it would
    stall every station's readings behind it, so the message is isolated instead.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, PoolTimeout))


def dead_letter(message: Message, station_id: str | None, rejections: list[Rejection]) -> dict:
    """One dead letter for one rejected payload, whatever the number of its bad samples."""
    return dead_letters.row(
        received_at=message.received_at, source=message.source, topic=message.topic,
        station_id=station_id if station_id and STATION_ID_RE.match(station_id) else None,
        payload=message.payload, rejections=rejections)
