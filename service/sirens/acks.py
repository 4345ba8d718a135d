"""Sirens' acks (``{prefix}/sirens/{id}/ack``): recorded by every instance (idempotent), a bad one a dead letter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import sirens as rules
from alerts.model import Rejection
from alerts.times import rfc3339
from sensors import topics
from service import dead_letters
from service.db import dialect
from service.db.schema import siren_commands, siren_state
from service.sirens.troubles import end_trouble, raise_trouble
from service.topic_messages import TopicMessage, apply_each

log = logging.getLogger(__name__)


def record_acks(services, messages: Iterable[TopicMessage]) -> int:
    """Record controllers' acks; a bad one becomes a dead letter. Return how many were recorded.

    An unavailable database propagates (the ingest worker keeps the messages and retries).
    """
    recorded = sum(apply_each(messages, lambda message: _record_one(services, message),
                              "siren ack on %s could not be recorded"))
    if recorded:
        services.wake.dispatcher()
        services.wake.sirens()
    return recorded


def _record_one(services, message: TopicMessage) -> int:
    """Record one ack in its own transaction; 1 when it was recorded (not a duplicate, not refused)."""
    with services.engine.begin() as conn:
        outcome = _record_ack(conn, services, message)
    if isinstance(outcome, int):  # a dead letter of that many bytes: the cap counts it after the commit
        services.ingestor.dead_letter_cap.written(outcome)
    if outcome not in rules.ACK_STATES:
        return 0
    services.metrics.siren_acks.labels(outcome).inc()
    return 1


def _record_ack(conn: Connection, services, message: TopicMessage) -> str | int:
    """The ack's state when recorded, ``duplicate``, or the bytes of the dead letter it became."""
    prefix = services.settings.mqtt_topic_prefix
    siren_id = topics.parse_siren_topic(prefix, message.topic, "ack")
    try:
        doc = json.loads(message.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _refuse(conn, message, "malformed_json", "the ack is not JSON")
    ack, problem = rules.parse_ack(doc)
    if ack is None:
        reason, _, detail = problem.partition(": ")
        return _refuse(conn, message, reason, detail or problem)
    query = dialect.locked(sa.select(siren_commands).where(siren_commands.c.command_id == ack["command_id"]), conn)
    command = conn.execute(query).first()
    if command is None or command.siren_id != siren_id:
        return _refuse(conn, message, "unknown_command",
                       f"no command {ack['command_id'][:64]!r} was sent to siren {siren_id}")
    if command.status == "acked" and (command.ack or {}).get("state") == ack["state"]:
        return "duplicate"  # QoS 1 redelivery, or another instance recorded it
    now = message.received_at
    conn.execute(sa.update(siren_commands).where(siren_commands.c.command_id == command.command_id).values(
        status="acked", ack={"state": ack["state"], "detail": ack["detail"]}, acked_at=now))
    values = {"last_ack": {**ack, "at": rfc3339(now), "action": command.action}, "updated_at": now}
    if ack["state"] == "error" or command.action != "test":  # a test leaves the siren as it was
        values["state"] = ack["state"]
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id).values(**values))
    if ack["state"] == "error":
        raise_trouble(conn, siren_id, command.station_id, "error", now, command_id=command.command_id,
                      detail=ack["detail"], exercise=services.settings.exercise)
    else:
        end_trouble(conn, siren_id, command.station_id, now, command_id=command.command_id)
    return ack["state"]


def _refuse(conn: Connection, message: TopicMessage, reason: str, detail: str) -> int:
    log.info("siren ack on %s refused: %s (%s)", message.topic[:200], reason, detail)
    row = dead_letters.row(received_at=message.received_at, source="mqtt", topic=message.topic, station_id=None,
                           payload=message.payload, rejections=[Rejection(reason, detail)])
    return dead_letters.insert(conn, [row])
