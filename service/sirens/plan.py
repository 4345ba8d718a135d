"""What every siren should be told now: the controller's plan, from the registry, the open alerts and the state rows."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import sirens as rules
from service.db.schema import siren_state
from service.maintenance import stations_in_maintenance
from service.sirens.state import commanded, ensure_state, issue, open_alerts, override, registry_sirens, state_rows


def plan(conn: Connection, now: datetime, ack_timeout_s: float, *, apply: bool) -> int:
    """Compare every siren with its station's alerts; with ``apply``, store the commands it needs. Return how many."""
    configs = registry_sirens(conn)
    if not configs:
        return 0
    alerts_by_station = open_alerts(conn)
    maintenance = stations_in_maintenance(conn, now)
    states = state_rows(conn, lock=apply)
    needed = 0
    for config in configs:
        row = states.get(config.id)
        if row is None:
            needed += 1
            if not apply:
                continue
            row = ensure_state(conn, config, states, now)
        elif apply:
            row = ensure_state(conn, config, states, now)
        wanted = rules.want(config, alerts_by_station.get(config.station_id, []),
                            automatic=config.station_id not in maintenance)
        held = override(row["override"])
        if held is not None and not rules.override_holds(held, wanted):
            needed += 1
            if apply:  # the alert's level changed: the automatic decision is back
                conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == config.id)
                             .values(override=None, updated_at=now))
            held = None
        command = rules.next_command(config, wanted, commanded(row["commanded"]), held, now, ack_timeout_s)
        if command is not None:
            needed += 1
            if apply:
                issue(conn, command, config.station_id, now, ack_timeout_s)
    return needed


def next_renewal(conn: Connection, ack_timeout_s: float) -> datetime | None:
    """The earliest time a running ``on`` must be renewed."""
    durations = {c.id: c.duration_s for c in registry_sirens(conn)}
    times = [rules.renewal_at(commanded(row["commanded"]), durations[sid], ack_timeout_s)
             for sid, row in state_rows(conn).items() if sid in durations]
    return min((t for t in times if t is not None), default=None)
