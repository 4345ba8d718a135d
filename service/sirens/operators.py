"""What operators do with sirens: a command by hand (``POST /sirens/{id}/commands``), and ``GET /sirens``."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import sirens as rules
from alerts.errors import SirenBusy
from alerts.times import rfc3339
from service.db.schema import siren_commands
from service.sirens.state import commanded, ensure_state, find_siren, issue, open_alerts, registry_sirens, state_rows


def operator_command(conn: Connection, siren_id: str, action: str, duration_s: int | None, by: str,
                     now: datetime, ack_timeout_s: float) -> dict:
    """An operator's ``on``/``off``/``test``, stored for the controller to publish; return the command.

    ``on`` and ``off`` win over the automatic decision until the siren's alert or its level next
    changes. ``test`` sounds the siren briefly and leaves its state and the automation as they were;
    it is refused (SirenBusy) while the siren sounds for an alert. Works during maintenance too.
    """
    config = find_siren(conn, siren_id)
    states = state_rows(conn, lock=True)
    row = ensure_state(conn, config, states, now)
    wanted = rules.want(config, open_alerts(conn).get(config.station_id, []))
    level = None if wanted.level is None else wanted.level.label
    told = commanded(row["commanded"])
    if action == "test":
        if told is not None and told.action == "on" and (told.on_until is None or told.on_until > now):
            raise SirenBusy(f"siren {siren_id} is sounding (until {rfc3339(told.on_until)}); a test would cut it short")
        command = rules.Command(siren_id, "test", None, duration_s or rules.DEFAULT_TEST_DURATION_S, None, "test")
        override = None
    else:
        duration = (duration_s or config.duration_s) if action == "on" else 0
        command = rules.Command(siren_id, action, level if action == "on" else None, duration, wanted.alert_id,
                                "operator")
        override = rules.Override(action, level, wanted.alert_id)
    issue(conn, command, config.station_id, now, ack_timeout_s, by=by, override=override)
    return get_siren(conn, siren_id)["last_command"]


def command_to_dict(row) -> dict | None:
    """A stored command as the API shows it."""
    if row is None:
        return None
    return {"command_id": row.command_id, "action": row.action, "level": row.level, "duration_s": row.duration_s,
            "alert_id": row.alert_id, "reason": row.reason, "by": row.by, "sent_at": row.payload.get("sent_at"),
            "expires_at": rfc3339(row.expires_at), "status": row.status, "attempts": row.attempts,
            "last_sent_at": rfc3339(row.last_sent_at), "ack": row.ack, "acked_at": rfc3339(row.acked_at)}


def siren_to_dict(config: rules.SirenConfig, state: dict | None, last_command) -> dict:
    """One siren as ``GET /sirens`` shows it: where, what it was told, what it last answered."""
    state = state or {}
    told = commanded(state.get("commanded"))
    return {"id": config.id, "station_id": config.station_id, "at": config.at.label, "upstream": config.upstream,
            "duration_s": config.duration_s, "state": state.get("state") or "unknown",
            "trouble": state.get("trouble"),
            "on_until": rfc3339(told.on_until) if told is not None and told.action == "on" else None,
            "override": state.get("override"), "last_command": command_to_dict(last_command),
            "last_ack": state.get("last_ack")}


def list_sirens(conn: Connection, after: str | None, limit: int) -> tuple[list[dict], str | None]:
    """Sirens by id after ``after``; returns one page and the id the next page starts after (or None)."""
    configs = sorted((c for c in registry_sirens(conn) if after is None or c.id > after), key=lambda c: c.id)
    page, more = configs[:limit], len(configs) > limit
    states = state_rows(conn)
    ids = [states[c.id]["last_command_id"] for c in page if c.id in states and states[c.id]["last_command_id"]]
    commands = {r.command_id: r for r in conn.execute(sa.select(siren_commands)
                                                       .where(siren_commands.c.command_id.in_(ids)))} if ids else {}
    items = []
    for config in page:
        state = states.get(config.id)
        items.append(siren_to_dict(config, state, commands.get((state or {}).get("last_command_id"))))
    return items, (page[-1].id if more else None)


def get_siren(conn: Connection, siren_id: str) -> dict:
    """One siren; LookupError when no station lists it."""
    config = find_siren(conn, siren_id)
    state = state_rows(conn).get(siren_id)
    command = None
    if state and state["last_command_id"]:
        command = conn.execute(sa.select(siren_commands).where(
            siren_commands.c.command_id == state["last_command_id"])).first()
    return siren_to_dict(config, state, command)
