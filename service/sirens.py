"""Sirens in the database and on MQTT (spec section 12): commands, acks, re-sends, the ``siren`` alert.

``SirenController`` is a thread of the process that holds the MQTT connection (roles ``all`` and
``ingest``); with several such instances only the holder of the ``sirens`` lease decides and
publishes. Each pass it compares every siren with its station's open alerts (``alerts.sirens``
decides), stores each new command (``siren_commands``, status ``pending``) and only then
publishes it; an unanswered one is published again with the same ``command_id`` every
``EWS_SIREN_ACK_TIMEOUT_S``. The thread sleeps exactly until the next re-send or renewal is due
(or it is woken: new alert events, an operator's command, an ack), never a scheduler period.
Because a command is stored before it is published, a process killed between the two publishes
it after the restart; one killed while awaiting the ack re-sends or keeps awaiting it.

Acks arrive on ``{prefix}/sirens/{id}/ack`` through the ingest client (``record_acks``): every
instance records them (idempotent), after which the ingest worker acknowledges the MQTT message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import sirens as rules
from alerts.errors import SirenBusy
from alerts.levels import Level
from alerts.model import Rejection
from sensors import topics
from service import alerting, dead_letters
from service.ingest import database_unavailable
from service.db import dialect
from service.db.engine import begin_reads_only, end_reads_only
from service.db.schema import alert_events, alerts, siren_commands, siren_state, stations
from service.station_rules import station_rules

log = logging.getLogger(__name__)

SIREN_LEASE = "sirens"
POLL_S = 2.0  # safety net: alerts another process changed, a wake-up that was missed
FOLLOWED_KINDS = ("water_level", "upstream")
ALERT_KIND = "siren"


@dataclasses.dataclass(frozen=True)
class AckMessage:
    """One message of a siren's ack topic, as it arrived."""

    topic: str
    payload: bytes
    received_at: datetime


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


def _open_alerts(conn: Connection) -> dict[str, list[rules.AlertView]]:
    """The open real alerts that may sound a siren, by station (a drill never sounds one)."""
    rows = conn.execute(sa.select(alerts.c.id, alerts.c.station_id, alerts.c.kind, alerts.c.level).where(
        alerts.c.state == "active", alerts.c.kind.in_(FOLLOWED_KINDS), alerts.c.exercise_id.is_(None)))
    found: dict[str, list[rules.AlertView]] = {}
    for row in rows:
        found.setdefault(row.station_id, []).append(rules.AlertView(row.id, Level.parse(row.level), row.kind))
    return found


def stations_under_maintenance(conn: Connection, now: datetime) -> set[str]:
    """Stations in a maintenance window now (spec section 10): their sirens are not switched automatically."""
    from service.db import schema

    windows = getattr(schema, "maintenance_windows", None)
    if windows is None or not {"station_id", "starts_at", "ends_at"} <= set(windows.c.keys()):
        return set()
    rows = conn.execute(sa.select(windows.c.station_id).where(windows.c.starts_at <= now, windows.c.ends_at > now))
    return {row.station_id for row in rows}


# --- state rows -----------------------------------------------------------------------------


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def _parse_ts(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _commanded(doc: dict | None) -> rules.Commanded | None:
    if not doc:
        return None
    return rules.Commanded(doc["action"], doc.get("level"), doc.get("alert_id"), _parse_ts(doc.get("on_until")))


def _commanded_doc(commanded: rules.Commanded) -> dict:
    return {"action": commanded.action, "level": commanded.level, "alert_id": commanded.alert_id,
            "on_until": _iso(commanded.on_until)}


def _override(doc: dict | None) -> rules.Override | None:
    return None if not doc else rules.Override(doc["action"], doc.get("level"), doc.get("alert_id"))


def _state_rows(conn: Connection, lock: bool = False) -> dict[str, dict]:
    query = sa.select(siren_state)
    if lock:
        query = dialect.locked(query, conn)
    return {row.siren_id: dict(row._mapping) for row in conn.execute(query)}


def _ensure_state(conn: Connection, config: rules.SirenConfig, states: dict[str, dict], now: datetime) -> dict:
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
    commanded = rules.after_command(command, now)
    if commanded is not None:
        values["commanded"] = _commanded_doc(commanded)
    if override is not None:
        values["override"] = {"action": override.action, "level": override.level, "alert_id": override.alert_id}
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == command.siren_id).values(**values))
    log.info("siren %s: %s%s (%s, command %s)", command.siren_id, command.action,
             f" at {command.level}" if command.level and command.action == "on" else "", command.reason, command_id)
    return body


def plan(conn: Connection, now: datetime, ack_timeout_s: float, *, apply: bool) -> int:
    """Compare every siren with its station's alerts; with ``apply``, store the commands it needs. Return how many."""
    configs = registry_sirens(conn)
    if not configs:
        return 0
    open_alerts = _open_alerts(conn)
    maintenance = stations_under_maintenance(conn, now)
    states = _state_rows(conn, lock=apply)
    needed = 0
    for config in configs:
        row = states.get(config.id)
        if row is None:
            needed += 1
            if not apply:
                continue
            row = _ensure_state(conn, config, states, now)
        elif apply:
            row = _ensure_state(conn, config, states, now)
        wanted = rules.want(config, open_alerts.get(config.station_id, []),
                            automatic=config.station_id not in maintenance)
        override = _override(row["override"])
        if override is not None and not rules.override_holds(override, wanted):
            needed += 1
            if apply:  # the alert's level changed: the automatic decision is back
                conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == config.id)
                             .values(override=None, updated_at=now))
            override = None
        command = rules.next_command(config, wanted, _commanded(row["commanded"]), override, now, ack_timeout_s)
        if command is not None:
            needed += 1
            if apply:
                issue(conn, command, config.station_id, now, ack_timeout_s)
    return needed


def next_renewal(conn: Connection, ack_timeout_s: float) -> datetime | None:
    """The earliest time a running ``on`` must be renewed."""
    durations = {c.id: c.duration_s for c in registry_sirens(conn)}
    times = [rules.renewal_at(_commanded(row["commanded"]), durations[sid], ack_timeout_s)
             for sid, row in _state_rows(conn).items() if sid in durations]
    return min((t for t in times if t is not None), default=None)


# --- operators and GET /sirens ----------------------------------------------------------------


def find_siren(conn: Connection, siren_id: str) -> rules.SirenConfig:
    """The siren ``siren_id`` of the registry; LookupError when no station lists it."""
    for config in registry_sirens(conn):
        if config.id == siren_id:
            return config
    raise LookupError(f"no siren {siren_id}")


def operator_command(conn: Connection, siren_id: str, action: str, duration_s: int | None, by: str,
                     now: datetime, ack_timeout_s: float) -> dict:
    """An operator's ``on``/``off``/``test``, stored for the controller to publish; return the command.

    ``on`` and ``off`` win over the automatic decision until the siren's alert or its level next
    changes. ``test`` sounds the siren briefly and leaves its state and the automation as they were;
    it is refused (SirenBusy) while the siren sounds for an alert. Works during maintenance too.
    """
    config = find_siren(conn, siren_id)
    states = _state_rows(conn, lock=True)
    row = _ensure_state(conn, config, states, now)
    wanted = rules.want(config, _open_alerts(conn).get(config.station_id, []))
    level = None if wanted.level is None else wanted.level.label
    commanded = _commanded(row["commanded"])
    if action == "test":
        if commanded is not None and commanded.action == "on" and (commanded.on_until is None or commanded.on_until > now):
            raise SirenBusy(f"siren {siren_id} is sounding (until {_iso(commanded.on_until)}); a test would cut it short")
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
            "expires_at": _iso(row.expires_at), "status": row.status, "attempts": row.attempts,
            "last_sent_at": _iso(row.last_sent_at), "ack": row.ack, "acked_at": _iso(row.acked_at)}


def siren_to_dict(config: rules.SirenConfig, state: dict | None, last_command) -> dict:
    """One siren as ``GET /sirens`` shows it: where, what it was told, what it last answered."""
    state = state or {}
    commanded = _commanded(state.get("commanded"))
    return {"id": config.id, "station_id": config.station_id, "at": config.at.label, "upstream": config.upstream,
            "duration_s": config.duration_s, "state": state.get("state") or "unknown",
            "trouble": state.get("trouble"),
            "on_until": _iso(commanded.on_until) if commanded is not None and commanded.action == "on" else None,
            "override": state.get("override"), "last_command": command_to_dict(last_command),
            "last_ack": state.get("last_ack")}


def list_sirens(conn: Connection, after: str | None, limit: int) -> tuple[list[dict], str | None]:
    """Sirens by id after ``after``; returns one page and the id the next page starts after (or None)."""
    configs = sorted((c for c in registry_sirens(conn) if after is None or c.id > after), key=lambda c: c.id)
    page, more = configs[:limit], len(configs) > limit
    states = _state_rows(conn)
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
    state = _state_rows(conn).get(siren_id)
    command = None
    if state and state["last_command_id"]:
        command = conn.execute(sa.select(siren_commands).where(
            siren_commands.c.command_id == state["last_command_id"])).first()
    return siren_to_dict(config, state, command)


# --- troubles: the staff-only ``siren`` alert ------------------------------------------------


def _dispatch(conn: Connection, station_id: str, type_: str, level: Level, peak: Level, exercise: bool) -> str:
    """``pending`` when the notification policy tells someone of this event (staff: an operational kind)."""
    row = conn.execute(sa.select(stations.c.id, stations.c.rules).where(stations.c.id == station_id)).first()
    rules_ = station_rules({"id": station_id, "rules": row.rules if row is not None else None})
    return "pending" if alerting.notifies(ALERT_KIND, type_, level, peak, rules_, exercise=exercise) else "none"


def _open_siren_alert(conn: Connection, station_id: str):
    return conn.execute(sa.select(alerts).where(alerts.c.station_id == station_id, alerts.c.kind == ALERT_KIND,
                                                alerts.c.state == "active", alerts.c.exercise_id.is_(None))).first()


def raise_trouble(conn: Connection, siren_id: str, station_id: str, problem: str, now: datetime, *,
                  command_id: str | None, detail: str = "", exercise: bool = False) -> bool:
    """Mark the siren in trouble (``silent`` or ``error``) and open its station's ``siren`` alert; True if opened."""
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id)
                 .values(trouble=problem, updated_at=now))
    if _open_siren_alert(conn, station_id) is not None:
        return False
    alert_id = conn.execute(sa.insert(alerts).values(
        station_id=station_id, kind=ALERT_KIND, level=Level.WASPADA.label, peak_level=Level.WASPADA.label,
        state="active", opened_at=now, exercise=exercise, last_notified_at=now)).inserted_primary_key[0]
    reading = {"siren_id": siren_id, "problem": problem, "command_id": command_id, "detail": detail[:200]}
    dispatch = _dispatch(conn, station_id, "raised", Level.WASPADA, Level.WASPADA, exercise)
    conn.execute(sa.insert(alert_events).values(alert_id=alert_id, type="raised", level=Level.WASPADA.label, at=now,
                                                recorded_at=now, reading=reading, dispatch=dispatch))
    log.warning("siren %s at %s: %s (command %s) %s", siren_id, station_id,
                "does not answer" if problem == "silent" else "reports an error", command_id, detail)
    return True


def end_trouble(conn: Connection, siren_id: str, station_id: str, now: datetime, *, command_id: str) -> bool:
    """A good ack: the siren is fine; the station's ``siren`` alert ends when none of its sirens is in trouble."""
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id).values(trouble=None, updated_at=now))
    troubled = conn.execute(sa.select(sa.func.count()).select_from(siren_state).where(
        siren_state.c.station_id == station_id, siren_state.c.trouble.is_not(None))).scalar_one()
    current = _open_siren_alert(conn, station_id)
    if troubled or current is None:
        return False
    conn.execute(sa.update(alerts).where(alerts.c.id == current.id).values(
        state="closed", level=Level.NORMAL.label, closed_at=now, last_notified_at=now))
    dispatch = _dispatch(conn, station_id, "cleared", Level.NORMAL, Level.parse(current.peak_level),
                         bool(current.exercise))
    conn.execute(sa.insert(alert_events).values(
        alert_id=current.id, type="cleared", level=Level.NORMAL.label, at=now, recorded_at=now,
        reading={"siren_id": siren_id, "command_id": command_id}, dispatch=dispatch))
    log.info("siren %s at %s answers again; its siren alert %s ended", siren_id, station_id, current.id)
    return True


# --- acks -----------------------------------------------------------------------------------


def record_acks(services, messages: Iterable[AckMessage]) -> int:
    """Record controllers' acks; a bad one becomes a dead letter. Return how many were recorded.

    An unavailable database propagates (the ingest worker keeps the messages and retries).
    """
    recorded, told = 0, False
    for message in messages:
        try:
            with services.engine.begin() as conn:
                outcome = _record_ack(conn, services, message)
            if isinstance(outcome, int):  # a dead letter of that many bytes: the cap counts it after the commit
                services.ingestor.dead_letter_cap.written(outcome)
            if outcome in rules.ACK_STATES:
                services.metrics.siren_acks.labels(outcome).inc()
                recorded += 1
                told = True
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.exception("siren ack on %s could not be recorded", message.topic[:200])
    if told:
        services.wake.dispatcher()
        services.wake.sirens()
    return recorded


def _record_ack(conn: Connection, services, message: AckMessage) -> str | int:
    """The ack's state when recorded, ``duplicate``, or the bytes of the dead letter it became."""
    prefix = services.settings.mqtt_topic_prefix
    siren_id = topics.parse_siren_topic(prefix, message.topic, "ack")
    try:
        doc = json.loads(message.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _refuse(conn, services, message, "malformed_json", "the ack is not JSON")
    ack, problem = rules.parse_ack(doc)
    if ack is None:
        reason, _, detail = problem.partition(": ")
        return _refuse(conn, services, message, reason, detail or problem)
    query = dialect.locked(sa.select(siren_commands).where(siren_commands.c.command_id == ack["command_id"]), conn)
    command = conn.execute(query).first()
    if command is None or command.siren_id != siren_id:
        return _refuse(conn, services, message, "unknown_command",
                       f"no command {ack['command_id'][:64]!r} was sent to siren {siren_id}")
    if command.status == "acked" and (command.ack or {}).get("state") == ack["state"]:
        return "duplicate"  # QoS 1 redelivery, or another instance recorded it
    now = message.received_at
    conn.execute(sa.update(siren_commands).where(siren_commands.c.command_id == command.command_id).values(
        status="acked", ack={"state": ack["state"], "detail": ack["detail"]}, acked_at=now))
    values = {"last_ack": {**ack, "at": _iso(now), "action": command.action}, "updated_at": now}
    if ack["state"] == "error" or command.action != "test":  # a test leaves the siren as it was
        values["state"] = ack["state"]
    conn.execute(sa.update(siren_state).where(siren_state.c.siren_id == siren_id).values(**values))
    if ack["state"] == "error":
        raise_trouble(conn, siren_id, command.station_id, "error", now, command_id=command.command_id,
                      detail=ack["detail"], exercise=services.settings.exercise)
    else:
        end_trouble(conn, siren_id, command.station_id, now, command_id=command.command_id)
    return ack["state"]


def _refuse(conn: Connection, services, message: AckMessage, reason: str, detail: str) -> int:
    log.info("siren ack on %s refused: %s (%s)", message.topic[:200], reason, detail)
    row = dead_letters.row(received_at=message.received_at, source="mqtt", topic=message.topic, station_id=None,
                           payload=message.payload, rejections=[Rejection(reason, detail)])
    return dead_letters.insert(conn, [row])


# --- the controller thread ------------------------------------------------------------------


class SirenController:
    """Decides, stores and publishes siren commands; re-sends unanswered ones on their own precise timer."""

    def __init__(self, services, publish: Callable[[str, bytes], bool], *, leader=None,
                 wake_event: threading.Event | None = None) -> None:
        self.services = services
        self.publish = publish
        self.leader = leader
        self.timeout_s = services.settings.siren_ack_timeout_s
        # Set by whoever wakes the controller (service/bootstrap.py hands the same event to the ingest side).
        self._wake = wake_event or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sirens", daemon=True)

    def start(self) -> "SirenController":
        """Start the thread (it leads only while it holds the lease, when there is one)."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the pass in hand."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def wake(self) -> None:
        """Look again now (alerts changed, an operator's command, an ack)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = POLL_S
            if self.leader is None or self.leader.is_leader:
                try:
                    due = self.run_once(self.services.clock())
                    if due is not None:
                        wait = min(POLL_S, max(0.0, (due - self.services.clock()).total_seconds()))
                except Exception:
                    log.exception("siren pass failed; trying again in %g s", POLL_S)
            self._wake.wait(wait)
            self._wake.clear()

    def run_once(self, now: datetime) -> datetime | None:
        """One pass: new commands, publications and re-sends due, give-ups; return when the next is due."""
        reading = begin_reads_only()  # SQLite: the look-ups of each pass never wait for the write lock
        try:
            with self.services.engine.connect() as conn:
                needed = plan(conn, now, self.timeout_s, apply=False)
        finally:
            end_reads_only(reading)
        if needed:
            with self.services.engine.begin() as conn:
                plan(conn, now, self.timeout_s, apply=True)
        due = self._publish_due(now)
        with self.services.engine.connect() as conn:
            renewal = next_renewal(conn, self.timeout_s)
        return min((t for t in (due, renewal) if t is not None), default=None)

    def _publish_due(self, now: datetime) -> datetime | None:
        with self.services.engine.connect() as conn:
            pending = conn.execute(sa.select(siren_commands).where(siren_commands.c.status == "pending")
                                   .order_by(siren_commands.c.created_at)).all()
            listed = set(siren_owners(conn)) if pending else set()
        next_due: datetime | None = None
        for command in pending:
            if command.siren_id not in listed:
                self._drop(command)  # its station no longer lists it: nobody to command, nothing to report
                continue
            if now >= command.expires_at and command.attempts > 0:
                step = "unanswered"  # e.g. found after a long outage: a late copy would be ignored anyway
            else:
                step = rules.resend_step(command.attempts, command.last_sent_at, now, self.timeout_s)
            if step == "send" and self._claim_send(command, now):
                self._send(command)
                due = now + timedelta(seconds=self.timeout_s)
            elif step == "unanswered":
                self._give_up(command, now)
                continue
            else:
                due = rules.due_at(command.attempts, command.last_sent_at, self.timeout_s)
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
        return next_due

    def _claim_send(self, command, now: datetime) -> bool:
        """Count the publication before it happens (conditional: one publisher per attempt)."""
        with self.services.engine.begin() as conn:
            return conn.execute(sa.update(siren_commands).where(
                siren_commands.c.command_id == command.command_id, siren_commands.c.status == "pending",
                siren_commands.c.attempts == command.attempts,
            ).values(attempts=command.attempts + 1, last_sent_at=now)).rowcount == 1

    def _send(self, command) -> None:
        topic = topics.siren_command_topic(self.services.settings.mqtt_topic_prefix, command.siren_id)
        body = json.dumps(command.payload, separators=(",", ":")).encode("utf-8")
        self.services.metrics.siren_published.labels("again" if command.attempts else "first").inc()
        if not self.publish(topic, body):
            log.warning("siren %s: command %s could not be handed to the broker now; re-sent in %g s",
                        command.siren_id, command.command_id, self.timeout_s)
        elif command.attempts:
            log.warning("siren %s: no ack for command %s; published again (%d of %d)", command.siren_id,
                        command.command_id, command.attempts, rules.MAX_RESENDS)

    def _drop(self, command) -> None:
        with self.services.engine.begin() as conn:
            conn.execute(sa.update(siren_commands).where(siren_commands.c.command_id == command.command_id,
                                                         siren_commands.c.status == "pending")
                         .values(status="superseded"))
        log.info("siren %s is no longer in the registry: command %s dropped", command.siren_id, command.command_id)

    def _give_up(self, command, now: datetime) -> None:
        with self.services.engine.begin() as conn:
            won = conn.execute(sa.update(siren_commands).where(
                siren_commands.c.command_id == command.command_id, siren_commands.c.status == "pending",
            ).values(status="unanswered")).rowcount == 1
            opened = won and raise_trouble(conn, command.siren_id, command.station_id, "silent", now,
                                           command_id=command.command_id, exercise=self.services.settings.exercise)
        if won:
            self.services.metrics.siren_unanswered.inc()
        if opened:
            self.services.wake.dispatcher()
