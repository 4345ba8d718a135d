"""The sirens of the registry and their stored state: who owns which siren, what each was told, storing a command."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import sirens as rules
from alerts.levels import Level
from alerts.times import rfc3339
from service.db import dialect
from service.db.schema import alerts, siren_commands, siren_state, stations

log = logging.getLogger(__name__)

FOLLOWED_KINDS = ("water_level", "upstream")


# --- the registry ---------------------------------------------------------------------------


def siren_owners(conn: Connection) -> dict[str, str]:
    """Every siren id in the registry and the station it belongs to."""
    owners: dict[str, str] = {}
    for row in conn.execute(sa.select(stations.c.id, stations.c.sirens).order_by(stations.c.id)):
        for siren in row.sirens or []:
            owners.setdefault(str(siren["id"]), row.id)
    return owners


def registry_sirens(conn: Connection) -> list[rules.SirenConfig]:
    """Every siren of every station, as ``alerts.sirens`` reads it."""
    found = []
    for row in conn.execute(sa.select(stations.c.id, stations.c.sirens).order_by(stations.c.id)):
        found += [rules.parse_siren(siren, row.id) for siren in row.sirens or []]
    return found


def find_siren(conn: Connection, siren_id: str) -> rules.SirenConfig:
    """The siren ``siren_id`` of the registry; LookupError when no station lists it."""
    for config in registry_sirens(conn):
        if config.id == siren_id:
            return config
    raise LookupError(f"no siren {siren_id}")


def open_alerts(conn: Connection) -> dict[str, list[rules.AlertView]]:
    """The open real alerts that may sound a siren, by station (a drill never sounds one)."""
    rows = conn.execute(sa.select(alerts.c.id, alerts.c.station_id, alerts.c.kind, alerts.c.level).where(
        alerts.c.state == "active", alerts.c.kind.in_(FOLLOWED_KINDS), alerts.c.exercise_id.is_(None)))
    found: dict[str, list[rules.AlertView]] = {}
    for row in rows:
        found.setdefault(row.station_id, []).append(rules.AlertView(row.id, Level.parse(row.level), row.kind))
    return found


# --- state rows -----------------------------------------------------------------------------


def _parse_ts(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def commanded(doc: dict | None) -> rules.Commanded | None:
    """What a state row says the siren was last told to do (None: nothing yet)."""
    if not doc:
        return None
    return rules.Commanded(doc["action"], doc.get("level"), doc.get("alert_id"), _parse_ts(doc.get("on_until")))


def _commanded_doc(told: rules.Commanded) -> dict:
    return {"action": told.action, "level": told.level, "alert_id": told.alert_id, "on_until": rfc3339(told.on_until)}


def override(doc: dict | None) -> rules.Override | None:
    """An operator's ``on``/``off`` that a state row holds (None: the automatic decision rules)."""
    return None if not doc else rules.Override(doc["action"], doc.get("level"), doc.get("alert_id"))


def state_rows(conn: Connection, lock: bool = False) -> dict[str, dict]:
    """Every siren's state row, by siren id (``lock``: held until the transaction ends)."""
    query = sa.select(siren_state)
    if lock:
        query = dialect.locked(query, conn)
    return {row.siren_id: dict(row._mapping) for row in conn.execute(query)}


def ensure_state(conn: Connection, config: rules.SirenConfig, states: dict[str, dict], now: datetime) -> dict:
    """The siren's state row, created if new and moved with its siren to another station; ``states`` is updated."""
    row = states.get(config.id)
    if row is None:
        row = {"siren_id": config.id, "station_id": config.station_id, "state": "unknown", "commanded": None,
               "override": None, "trouble": None, "last_command_id": None, "last_ack": None, "updated_at": now}
        # Insert-or-ignore: the API (an operator's command) and the controller may both create it.
        conn.execute(dialect.insert_new(conn, siren_state, ["siren_id"]).values(**row))
        row = dict(conn.execute(dialect.locked(sa.select(siren_state).where(siren_state.c.siren_id == config.id),
                                               conn)).one()._mapping)
        states[config.id] = row
    elif row["station_id"] != config.station_id:  # the siren moved to another station
        conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == config.id)
                     .values(station_id=config.station_id, updated_at=now))
        row["station_id"] = config.station_id
    return row


# --- issuing commands -----------------------------------------------------------------------


def issue(conn: Connection, command: rules.Command, station_id: str, now: datetime, ack_timeout_s: float,
          *, by: str | None = None, override: rules.Override | None = None) -> dict:
    """Store ``command`` as pending (to be published by the controller); older pending ones are superseded."""
    command_id = uuid.uuid4().hex
    expires = rules.expires_at(now, ack_timeout_s)
    body = rules.payload(command_id, command, now, expires)
    conn.execute(sa.update(siren_commands).where(siren_commands.c.siren_id == command.siren_id,
                                                 siren_commands.c.status == "pending").values(status="superseded"))
    conn.execute(sa.insert(siren_commands).values(
        command_id=command_id, siren_id=command.siren_id, station_id=station_id, action=command.action,
        level=command.level, duration_s=command.duration_s, alert_id=command.alert_id, reason=command.reason,
        by=by, payload=body, created_at=now, expires_at=expires, attempts=0, status="pending"))
    values: dict = {"last_command_id": command_id, "updated_at": now}
    told = rules.after_command(command, now)
    if told is not None:
        values["commanded"] = _commanded_doc(told)
    if override is not None:
        values["override"] = {"action": override.action, "level": override.level, "alert_id": override.alert_id}
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == command.siren_id).values(**values))
    log.info("siren %s: %s%s (%s, command %s)", command.siren_id, command.action,
             f" at {command.level}" if command.level and command.action == "on" else "", command.reason, command_id)
    return body
