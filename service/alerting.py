"""The alert lifecycle in the database: episodes, events and the outbox to the SMS dispatcher.

``apply_samples`` runs inside the ingest transaction: it judges the station's new samples
with ``alerts.engine``, stores the engine state, and turns level changes into alerts
(one open alert per station and kind, per ``AlertScope``: real or one drill's) and alert events. An event that must reach people
gets ``dispatch='pending'``; the dispatcher expands it into notifications. The scheduled
jobs ``check_offline`` and ``remind_awas`` and the staff action ``acknowledge`` complete
the lifecycle. Every function is idempotent under retries and concurrent instances. A station's
rules come from ``service.station_rules``; alerts as the API shows them from ``service.alert_views``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from alerts import policy
from alerts.errors import AlreadyAcknowledged
from alerts.engine import EngineEvent, Judgement, current_rain_sums, judge
from alerts.levels import Level
from alerts.model import GAUGE_ALERT_KINDS, Sample
from alerts.rules import Rules
from alerts.times import rfc3339
from service import quality, station_states, upstream
from service.alert_records import REAL, AlertScope, event_dict, in_maintenance, insert_event, notifies, open_alert
from service.alert_views import get_alert
from service.db import dialect
from service.db.engine import reads_only
from service.db.schema import alerts, station_state, stations
from service.station_rules import station_rules

log = logging.getLogger(__name__)


# --- the ingest path ----------------------------------------------------------------


def apply_samples(conn: Connection, station: Mapping, samples: list[Sample], now: datetime, *,
                  exercise: bool = False, state: Mapping | None = None, rules: Rules | None = None,
                  state_values: Mapping | None = None, reporting: bool = True, metrics=None) -> list[dict]:
    """Judge a station's newly stored samples inside the caller's transaction; return the events recorded.

    The caller has inserted the samples and holds the station_state row (created if new);
    this updates only its ``engine`` and ``level`` columns. Ingest passes the ``state`` row
    it has locked (read before this batch) and the station's cached ``rules``, which saves
    reading and parsing them again on every batch, and its own ``state_values`` (latest values,
    last seen), written in the same UPDATE. ``reporting`` is False for samples received before the
    station was last heard (a replay of old dead letters): they end no offline alert.
    """
    station_id = station["id"]
    rules = rules or station_rules(station)
    if state is None:
        row = conn.execute(sa.select(station_state.c.engine, station_state.c.engine_delta, station_state.c.online)
                           .where(station_state.c.station_id == station_id)).first()
        state = dict(row._mapping) if row is not None else None
    engine_state = None if state is None else station_states.whole_state(
        conn, station_id, rules, state.get("engine"), state.get("engine_delta"))
    judgement, recorded = judge_and_record(conn, station_id, rules, engine_state, samples, now,
                                           AlertScope(exercise=exercise),
                                           expected_interval_s=station.get("expected_interval_s"))
    quality.mark_quality(conn, station_id, judgement.quality, metrics)
    # ``state_values``: the caller's own station_state columns, written in the same UPDATE.
    values = {**(state_values or {}), "engine": judgement.state, "engine_delta": None, "level": judgement.level.label}
    due = quality.quality_due_at(judgement, now, station.get("expected_interval_s"))
    if due is not False:
        values["quality_due_at"] = due
    if state is None:  # callers other than ingest (tests, tools)
        conn.execute(sa.insert(station_state).values({"station_id": station_id, "latest": {}, "updated_at": now, **values}))
    else:
        conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(**values))
    # An open offline alert always comes with online = false, so an online station has none to end.
    if reporting and samples and (state is None or not state.get("online", False)):
        recorded.extend(_back_online(conn, station_id, rules, max(samples, key=lambda s: s.ts), now))
    return recorded


def judge_station(conn: Connection, station_id: str, rules: Rules, engine_state: Mapping | None,
                  samples: list[Sample], now: datetime, *, online: bool, reporting: bool,
                  exercise: bool = False, expected_interval_s: float | None = None,
                  metrics=None) -> tuple[Judgement, list[dict]]:
    """Judge a station's newly stored samples from the state ingest holds; return the judgement and events.

    The caller writes the state (service/station_states.py) and, when ``reporting``, sets the
    station online in the same UPDATE: this records the alerts and events, and the water levels'
    quality marks (spec section 17).
    """
    judgement, recorded = judge_and_record(conn, station_id, rules, engine_state, samples, now,
                                           AlertScope(exercise=exercise), expected_interval_s=expected_interval_s,
                                           defer_fold=True)
    quality.mark_quality(conn, station_id, judgement.quality, metrics)
    if reporting and samples and not online:
        recorded.extend(_back_online(conn, station_id, rules, max(samples, key=lambda s: s.ts), now,
                                     mark_online=False))
    return judgement, recorded


def judge_and_record(conn: Connection, station_id: str, rules: Rules, engine_state: Mapping | None,
                     samples: list[Sample], now: datetime, scope: AlertScope, *,
                     expected_interval_s: float | None = None, due_now: bool = False,
                     defer_fold: bool = False) -> tuple[Judgement, list[dict]]:
    """Judge samples from ``engine_state`` and record the alert events they cause in ``scope``.

    The caller stores the judgement's state (station_state, or exercise_state for a drill).
    ``due_now``: the scheduled check, which judges a held doubtful sample that is overdue.
    ``defer_fold``: the state is held in memory, never stored whole (alerts/engine/folding.py).
    """
    judgement = judge(rules, engine_state, samples, take_state=True, expected_interval_s=expected_interval_s,
                      now=now if due_now else None, defer_fold=defer_fold)
    if judgement.ignored:
        log.info("station %s: %d sample(s) older than the rules horizon stored but not judged",
                 station_id, judgement.ignored)
    recorded = []
    for event in judgement.events:
        recorded.extend(_record_engine_event(conn, station_id, rules, event, now, scope))
    return judgement, recorded


def _record_engine_event(conn: Connection, station_id: str, rules: Rules, event: EngineEvent, now: datetime,
                         scope: AlertScope) -> list[dict]:
    """Open, change or close the (station, kind) alert of ``scope`` for one engine event."""
    kind, level = event.kind, event.level
    current = open_alert(conn, station_id, kind, lock=True, scope=scope)
    type_ = event.type
    repaired = policy.heeds_maintenance(drill=scope.exercise_id is not None) and in_maintenance(conn, station_id, now)
    if current is None:
        if type_ == "cleared":
            return []  # nothing open to close (e.g. the alert predates a state reset)
        if not policy.raises(kind, policy.StationFacts({}, maintenance=repaired)):
            return []  # a low battery of a station under repair: no alert (spec section 10)
        # raised, or a change whose episode has no open alert: this opens the episode.
        type_ = "raised"
        alert_id = conn.execute(sa.insert(alerts).values(
            station_id=station_id, kind=kind, level=level.label, peak_level=level.label, state="active",
            opened_at=event.at, exercise=scope.exercise, exercise_id=scope.exercise_id)).inserted_primary_key[0]
        peak = level
    else:
        alert_id = current.id
        old = Level.parse(current.level)
        peak = max(Level.parse(current.peak_level), level)
        if type_ == "cleared":
            conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(
                state="closed", level=Level.NORMAL.label, closed_at=max(event.at, current.opened_at)))
        else:
            if type_ == "raised":  # the engine restarted an episode we still hold open
                type_ = "escalated" if level > old else "deescalated"
            if level == old:
                return []
            conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(
                level=level.label, peak_level=peak.label))
    dispatch = "pending" if notifies(kind, type_, level, peak, rules, exercise=scope.exercise,
                                     maintenance=repaired, reading=event.reading) else "none"
    event_id = insert_event(conn, alert_id, type_, level.label, event.at, now, event.reading, dispatch)
    if dispatch == "pending":
        conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(last_notified_at=now))
    recorded = [event_dict(event_id, alert_id, station_id, kind, type_, level.label, event.at, dispatch)]
    if kind == "water_level" and scope.exercise_id is None:  # a drill's waves stay in the drill
        recorded.extend(_upstream(conn, station_id, rules, alert_id, type_, level, event, now, scope))
    return recorded


def _upstream(conn: Connection, station_id: str, rules: Rules, alert_id: int, type_: str, level: Level,
              event: EngineEvent, now: datetime, scope: AlertScope) -> list[dict]:
    """A water-level alert warns downstream (spec section 11): its rise opens upstream alerts, its close ends them."""
    if type_ == "cleared":
        return upstream.source_closed(conn, station_id, alert_id, now)
    return upstream.source_event(conn, station_id, rules, alert_id, type_, level, event.at, event.reading, now,
                                 exercise=scope.exercise)


def _back_online(conn: Connection, station_id: str, rules: Rules, newest: Sample, now: datetime, *,
                 mark_online: bool = True) -> list[dict]:
    """A station that reports again ends its offline alert (staff are told)."""
    current = open_alert(conn, station_id, "offline", lock=True)
    if current is None:
        return []
    conn.execute(sa.update(alerts).where(alerts.c.id == current.id).values(
        state="closed", level=Level.NORMAL.label, closed_at=now, last_notified_at=now))
    if mark_online:
        conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(online=True))
    reading = {"metric": newest.metric, "value": newest.value, "ts": rfc3339(newest.ts)}
    # The outbox asks the policy again with the station's window (under repair: nobody is told).
    dispatch = "pending" if notifies("offline", "cleared", Level.NORMAL, Level.WASPADA, rules) else "none"
    event_id = insert_event(conn, current.id, "cleared", Level.NORMAL.label, now, now, reading, dispatch)
    return [event_dict(event_id, current.id, station_id, "offline", "cleared", "normal", now, dispatch)]


# --- scheduled jobs -----------------------------------------------------------------


def check_offline(engine: Engine, now: datetime, *, exercise: bool = False) -> int:
    """Raise an ``offline`` alert for each station silent longer than its ``stale_after_s``; return how many.

    Stations never heard from are skipped: they are registered but not yet installed.
    """
    with reads_only(), engine.connect() as conn:
        rows = conn.execute(
            sa.select(stations.c.id, stations.c.rules, station_state.c.last_seen)
            .join(station_state, station_state.c.station_id == stations.c.id)
            .where(station_state.c.last_seen.is_not(None))
        ).all()
    raised = 0
    for row in rows:
        rules = station_rules(row._mapping)
        if now - row.last_seen < timedelta(seconds=rules.stale_after_s):
            continue
        try:
            with engine.begin() as conn:
                raised += _raise_offline(conn, row.id, now, exercise, stale_after_s=rules.stale_after_s)
        except IntegrityError:
            continue  # another instance raised it first (uq_alerts_one_open)
    return raised


def gateway_offline(conn: Connection, station_id: str, now: datetime, *, exercise: bool = False) -> int:
    """The station's gateway said ``offline`` (its MQTT will, spec section 9): raise its ``offline`` alert now.

    The same alert as ``check_offline`` raises, for staff only; it ends when the station reports
    again. The caller holds the station's state row (``service.samples.lock_station_state``).
    """
    return _raise_offline(conn, station_id, now, exercise, stale_after_s=None)


def _raise_offline(conn: Connection, station_id: str, now: datetime, exercise: bool, *,
                   stale_after_s: int | None) -> int:
    """Open the station's offline alert; ``stale_after_s`` None: at once (the gateway's will), else only if still silent."""
    # Locked: serialises with the ingest of this station.
    query = dialect.locked(sa.select(station_state).where(station_state.c.station_id == station_id), conn)
    state = conn.execute(query).first()
    if state is None:
        return 0
    if stale_after_s is not None and (state.last_seen is None
                                      or now - state.last_seen < timedelta(seconds=stale_after_s)):
        return 0  # never heard (not yet installed), or a sample arrived meanwhile
    if state.online:
        conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(online=False))
    if open_alert(conn, station_id, "offline") is not None:
        return 0  # already raised
    repaired = in_maintenance(conn, station_id, now)  # an offline alert is never a drill's
    if not policy.raises("offline", policy.StationFacts({}, maintenance=repaired)):
        return 0  # the station is out of service (spec section 10)
    alert_id = conn.execute(sa.insert(alerts).values(
        station_id=station_id, kind="offline", level=Level.WASPADA.label, peak_level=Level.WASPADA.label,
        state="active", opened_at=now, exercise=exercise, last_notified_at=now)).inserted_primary_key[0]
    silent = None if state.last_seen is None else int((now - state.last_seen).total_seconds())
    reading = {"last_seen": rfc3339(state.last_seen), "silent_s": silent}
    if state.level != Level.NORMAL.label:
        reading["level"] = state.level  # staff are told the station fell silent at this level
    if stale_after_s is None:
        reading["status"] = "offline"  # said by the gateway (its will), not found by the silence check
    # An operational alert's notice depends on no rule of the station.
    dispatch = "pending" if notifies("offline", "raised", Level.WASPADA, Level.WASPADA, Rules()) else "none"
    insert_event(conn, alert_id, "raised", Level.WASPADA.label, now, now, reading, dispatch)
    cause = "its gateway said offline" if stale_after_s is None else "silent"
    log.warning("station %s is offline: %s (last seen %s)", station_id, cause, rfc3339(state.last_seen))
    return 1


def judge_overdue(engine: Engine, now: datetime, metrics=None) -> int:
    """Judge each held doubtful water level whose station stayed silent 2 x ``expected_interval_s``; return how many.

    A late warning beats none (spec section 17). Idempotent: the row is locked and re-read, and
    a judged state holds nothing any more. The whole state is written back (the ingest instance
    that holds the station sees the row's version move and reads it again).
    """
    with reads_only(), engine.connect() as conn:
        due = conn.execute(sa.select(station_state.c.station_id).where(
            station_state.c.quality_due_at.is_not(None), station_state.c.quality_due_at <= now)).scalars().all()
    judged = 0
    for station_id in due:
        with engine.begin() as conn:
            # Locked: serialises with the ingest of this station.
            state = conn.execute(dialect.locked(sa.select(
                station_state.c.engine, station_state.c.engine_delta, station_state.c.quality_due_at)
                .where(station_state.c.station_id == station_id), conn)).first()
            station = conn.execute(sa.select(stations).where(stations.c.id == station_id)).first()
            if state is None or station is None or state.quality_due_at is None or state.quality_due_at > now:
                continue
            station = dict(station._mapping)
            rules = station_rules(station)
            whole = station_states.whole_state(conn, station_id, rules, state.engine, state.engine_delta)
            judgement, _ = judge_and_record(conn, station_id, rules, whole, [], now, REAL,
                                            expected_interval_s=station.get("expected_interval_s"), due_now=True)
            quality.mark_quality(conn, station_id, judgement.quality, metrics)
            conn.execute(sa.update(station_state).where(station_state.c.station_id == station_id).values(
                engine=judgement.state, engine_delta=None, level=judgement.level.label, quality_due_at=None))
            judged += 1
            log.warning("station %s: doubtful water level not followed within 2 x %s s: judged as it is",
                        station_id, station.get("expected_interval_s"))
    return judged


def remind_awas(engine: Engine, now: datetime) -> int:
    """Add a ``reminded`` event to each public AWAS alert not notified for ``repeat_awas_s``; return how many."""
    with reads_only(), engine.connect() as conn:
        rows = conn.execute(
            sa.select(alerts.c.id, alerts.c.station_id, alerts.c.kind, alerts.c.last_notified_at,
                      stations.c.rules, station_state.c.latest, station_state.c.engine,
                      station_state.c.engine_delta)
            .join(stations, stations.c.id == alerts.c.station_id)
            .outerjoin(station_state, station_state.c.station_id == alerts.c.station_id)
            # A drill's alerts are not reminded: the exercise tests the warning chain, not the hourly repeat.
            .where(alerts.c.state == "active", alerts.c.level == Level.AWAS.label,
                   alerts.c.kind.in_(GAUGE_ALERT_KINDS), REAL.owns())  # a wave from upstream is not reminded
        ).all()
    reminded = 0
    for row in rows:
        rules = station_rules({"id": row.station_id, "rules": row.rules})
        reading = _latest_reading(row.kind, row.latest, row.engine, row.engine_delta)
        reading_ts = None if reading is None else datetime.fromisoformat(reading["ts"].replace("Z", "+00:00"))
        if not policy.reminder_due(row.last_notified_at, reading_ts, now, rules):
            continue  # not yet, or the station's newest value is too old to remind anyone of
        with engine.begin() as conn:
            # Only the caller whose conditional update wins records the reminder.
            old = (alerts.c.last_notified_at.is_(None) if row.last_notified_at is None
                   else alerts.c.last_notified_at == row.last_notified_at)
            won = conn.execute(sa.update(alerts).where(
                alerts.c.id == row.id, alerts.c.state == "active", alerts.c.level == Level.AWAS.label, old,
            ).values(last_notified_at=now)).rowcount == 1
            if won:  # the outbox asks the policy again with the acknowledgement and the station's window
                dispatch = "pending" if notifies(row.kind, "reminded", Level.AWAS, Level.AWAS, rules) else "none"
                insert_event(conn, row.id, "reminded", Level.AWAS.label, now, now, reading, dispatch)
                reminded += 1
    return reminded


def _latest_reading(kind: str, latest: Mapping | None, engine_state: Mapping | None,
                    delta: Mapping | None = None) -> dict | None:
    """The newest value behind an alert, for a reminder's text (rainfall: with the rolling sums)."""
    known = (latest or {}).get(kind)
    if known is None:
        return None
    ts = datetime.fromisoformat(str(known["ts"]).replace("Z", "+00:00"))
    reading = {"metric": kind, "value": known["value"], "ts": rfc3339(ts)}
    if kind == "rainfall":
        # Ingest keeps the sums in the delta; a whole state (first release, tools) holds the rain itself.
        sums = (delta or {}).get("rain_sums") or current_rain_sums(dict(engine_state) if engine_state else None)
        if sums is not None:
            reading["sums"] = sums
    return reading


# --- staff actions and queries ------------------------------------------------------


def acknowledge(conn: Connection, alert_id: int, by: str, note: str | None, now: datetime) -> dict:
    """Record that ``by`` has seen alert ``alert_id``; LookupError if there is none, AlreadyAcknowledged if done."""
    row = conn.execute(dialect.locked(sa.select(alerts).where(alerts.c.id == alert_id), conn)).first()
    if row is None:
        raise LookupError(f"no alert {alert_id}")
    if row.ack_at is not None:
        raise AlreadyAcknowledged(f"alert {alert_id} was acknowledged by {row.ack_by} at {rfc3339(row.ack_at)}")
    conn.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(ack_by=by, ack_at=now, ack_note=note))
    insert_event(conn, alert_id, "acknowledged", row.level, now, now, None, "none", by=by, note=note)
    return get_alert(conn, alert_id)


def clear_alerts(conn: Connection, scope: AlertScope, now: datetime, *, by: str, note: str) -> list[dict]:
    """Close every open alert of ``scope`` with a ``cleared`` event (and its all-clear, as the rules say)."""
    rows = conn.execute(sa.select(alerts, stations.c.rules).outerjoin(stations, stations.c.id == alerts.c.station_id)
                        .where(alerts.c.state == "active", scope.owns()).order_by(alerts.c.id)).all()
    recorded = []
    for row in rows:
        rules = station_rules({"id": row.station_id, "rules": row.rules})
        conn.execute(sa.update(alerts).where(alerts.c.id == row.id).values(state="closed", level="normal", closed_at=now))
        dispatch = "pending" if notifies(row.kind, "cleared", Level.NORMAL, Level.parse(row.peak_level), rules,
                                          exercise=bool(row.exercise)) else "none"
        event_id = insert_event(conn, row.id, "cleared", Level.NORMAL.label, now, now, None, dispatch, by=by, note=note)
        recorded.append(event_dict(event_id, row.id, row.station_id, row.kind, "cleared", "normal", now, dispatch))
    return recorded
