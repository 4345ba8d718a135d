"""The rules engine: judges one station's samples against its rules (spec section 3).

``judge(rules, state, samples)`` is a pure function. ``state`` is what the previous call
returned (a JSON-serialisable dict, stored in ``station_state.engine``) or None for a new
station. Samples are judged by measurement time. The design (docs/rules.md):

* A *snapshot* is everything the judgement of the next sample needs: per kind the level,
  the hold and clear timers of each threshold, the reading that caused the level; the
  last hour of water levels (rise rate) and the last 24 h of rain increments (rolling
  sums). Its size is bounded by those windows, never by the station's history.
* The state keeps two snapshots: ``current`` (after every sample seen) and ``base`` (after
  every sample older than ``HORIZON_S`` before the newest one), plus the samples in
  between (``horizon``). An in-order sample is applied to ``current``. A late sample inside the
  horizon makes the engine replay ``base`` + the horizon samples in time order, so the
  outcome is the same as if it had arrived on time. A sample older than the horizon is
  not judged (``Judgement.ignored`` counts it); it is still stored by the caller.
* Events come from level changes: each in-order sample that changes a kind's level
  yields one event; after a replay, a kind whose current level differs from before
  yields one event naming the reading that caused the new level.
* Water levels pass the quality check first (``alerts/quality.py``, spec section 17): a
  doubtful one is held back until the next one confirms or refutes it, or until it is
  overdue (a ``RELEASE`` entry in the horizon records when a silent station's held sample
  was judged as it is, so a replay decides the same). The ``sensor`` kind is the staff-only
  level of data quality: up while a held sample would raise the water level, or while the
  level is stuck. ``state["quality_marks"]`` holds the marks (doubtful, spike) of the
  horizon's water levels, so a judgement reports only the marks that changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

from alerts import quality as qc
from alerts.levels import WARNING_LEVELS, Level
from alerts.model import PUBLIC_ALERT_KINDS, Sample
from alerts.rules import RAIN_WINDOWS, Rules
from alerts.times import rfc3339

STATE_VERSION = 2  # 2: readable names (1 is still read, see _from_v1)
HORIZON_S = 6 * 3600  # how late a sample may arrive and still be judged
RISE_WINDOW_S = 3600  # the rise rate compares with the sample about an hour earlier...
RISE_MIN_SPAN_S = 1800  # ...and needs at least half an hour of span (10-minute noise)
RAIN_BUFFER_S = 24 * 3600  # the longest rainfall window

DEFAULT_EXPECTED_INTERVAL_S = 600  # a station's sampling interval when the caller does not say

# The kinds the engine judges: one per judged metric, plus ``sensor`` (data quality of water levels).
JUDGED_METRICS = ("water_level", "rainfall", "battery")
ENGINE_KINDS = (*JUDGED_METRICS, "sensor")
PUBLIC_ENGINE_KINDS = tuple(kind for kind in ENGINE_KINDS if kind in PUBLIC_ALERT_KINDS)  # the flood level
RELEASE = "~release"  # a horizon entry: a held water level judged as it is (sorts after every metric)

_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclasses.dataclass(frozen=True)
class EngineEvent:
    """A level change of one kind: raised, escalated, deescalated or cleared."""

    kind: str
    type: str
    level: Level
    at: datetime
    reading: dict


@dataclasses.dataclass
class Judgement:
    """The outcome of judging a batch: the state to store, the events, the levels now."""

    state: dict
    events: list[EngineEvent]
    levels: dict[str, Level]
    ignored: int = 0  # samples older than the horizon: stored, not judged
    quality: dict[datetime, str] = dataclasses.field(default_factory=dict)  # water levels whose mark changed
    overdue_at: datetime | None = None  # when a held doubtful sample is judged as it is, if no sample comes

    @property
    def level(self) -> Level:
        """The station's flood level: the highest public kind (battery is station health)."""
        return max(self.levels[kind] for kind in PUBLIC_ENGINE_KINDS)


def event_type(old: int, new: int) -> str:
    """The name of a change from level ``old`` to level ``new``."""
    if old == 0:
        return "raised"
    if new == 0:
        return "cleared"
    return "escalated" if new > old else "deescalated"


# --- time -------------------------------------------------------------------------


def _us(ts: datetime) -> int:
    """Integer microseconds since the epoch: exact in JSON, cheap to compare."""
    if ts.tzinfo is None:
        raise ValueError("sample timestamps must be timezone-aware (UTC)")
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """RFC 3339 UTC text of a time in epoch microseconds."""
    return rfc3339(_dt(us))


# --- snapshots --------------------------------------------------------------------


def _new_machine() -> dict:
    # above_since[i] / below_since[i]: since when (us) the value has been continuously at or
    # above the entry line / below the clear line of WARNING_LEVELS[i]; None when it is not.
    # threshold_level: the level from thresholds alone; level: the kind's level (with the rise rate).
    return {"level": 0, "threshold_level": 0, "above_since": [None, None, None],
            "below_since": [None, None, None], "cause": None}


def _new_snapshot() -> dict:
    machines = {kind: _new_machine() for kind in ENGINE_KINDS}
    machines["water_level"]["rise"] = {"on": False, "below_since": None}
    return {"kinds": machines, "water_levels": [], "rain": [], "last": None, "quality": qc.new_quality()}


def _clone_machine(machine: dict) -> dict:
    copy = {"level": machine["level"], "threshold_level": machine["threshold_level"],
            "above_since": list(machine["above_since"]), "below_since": list(machine["below_since"]),
            "cause": machine["cause"]}
    if "rise" in machine:
        copy["rise"] = dict(machine["rise"])
    if machine.get("forgotten_until") is not None:
        copy["forgotten_until"] = machine["forgotten_until"]
    return copy


def _clone_snapshot(snap: dict) -> dict:
    # States stored before the quality check have no sensor machine and no ``quality``: they start fresh.
    machines = {kind: _clone_machine(snap["kinds"][kind]) if kind in snap["kinds"] else _new_machine()
                for kind in ENGINE_KINDS}
    return {
        "kinds": machines,
        "water_levels": [list(e) for e in snap["water_levels"]],
        "rain": [list(e) for e in snap["rain"]],
        "last": list(snap["last"]) if snap["last"] is not None else None,
        "quality": qc.clone(snap.get("quality")),
    }


def new_state() -> dict:
    """The state of a station the engine has never seen."""
    return {"v": STATE_VERSION, "base": _new_snapshot(), "base_key": None, "current": _new_snapshot(), "horizon": [],
            "quality_marks": {}}


def _load(state: dict | None) -> dict:
    """A private copy of ``state`` (the caller's dict is never changed); older versions are migrated."""
    if state and state.get("v") == 1:
        state = _from_v1(state)
    if not is_full_state(state):
        return new_state()
    return {
        "v": STATE_VERSION,
        "base": _clone_snapshot(state["base"]),
        "base_key": list(state["base_key"]) if state.get("base_key") is not None else None,
        "current": _clone_snapshot(state["current"]),
        "horizon": [list(e) for e in state["horizon"]],
        "quality_marks": dict(state.get("quality_marks") or {}),
    }


def is_full_state(state: Mapping | None) -> bool:
    """True for a whole state of this version (both snapshots and the horizon), as ``judge`` returns it."""
    return bool(state) and state.get("v") == STATE_VERSION and "current" in state


# Version 1 (first release) used short keys; the loader renames them, so stored states keep working.
_V1_MACHINE = {"tl": "threshold_level", "up": "above_since", "down": "below_since"}


def _from_v1(state: Mapping) -> dict:
    """A version-1 state with this version's names (same meaning, same values)."""
    def snapshot(snap: Mapping) -> dict:
        kinds = {}
        for kind, machine in snap["k"].items():
            renamed = {_V1_MACHINE.get(key, key): value for key, value in machine.items()}
            if "rise" in renamed:
                renamed["rise"] = {"on": renamed["rise"]["on"], "below_since": renamed["rise"]["below"]}
            kinds[kind] = renamed
        return {"kinds": kinds, "water_levels": snap["wl"], "rain": snap["rain"], "last": snap["last"]}

    return {"v": STATE_VERSION, "base": snapshot(state["base"]), "base_key": state.get("base_key"),
            "current": snapshot(state["cur"]), "horizon": state["hz"]}


# --- checkpoints: what a store keeps between judgements ---------------------------------
#
# A whole state holds up to 6 h of samples (the horizon) and 24 h of rain: writing it after
# every batch costs more than judging. Everything in it follows from the base snapshot and
# the samples judged after it, in time order (that is how a late sample is judged), so a
# store keeps a *checkpoint* (the base snapshot and its key, rewritten now and then) plus
# the samples it stores anyway, and ``resume`` rebuilds the same state from them.


def checkpoint(state: Mapping, after_id: int | None = None) -> dict:
    """The checkpoint of a whole state: its base snapshot and the key of the newest sample in it.

    ``after_id``: for a base that holds no sample yet, the store's own marker of where this
    station's samples begin (a station re-created under an old id must not replay old ones).
    """
    doc = {"v": STATE_VERSION, "base": _clone_snapshot(state["base"]),
           "base_key": list(state["base_key"]) if state["base_key"] is not None else None}
    if state["base_key"] is None and after_id is not None:
        doc["after_id"] = after_id
    return doc


def base_key(state: Mapping) -> list | None:
    """The key ``[ts_us, metric]`` of the newest sample folded into the base (None: none yet)."""
    return list(state["base_key"]) if state["base_key"] is not None else None


def resume(rules: Rules, point: Mapping, key: list | None, entries: Iterable[tuple[int, str, float]], *,
           expected_interval_s: float | None = None) -> dict:
    """Rebuild the whole state from a checkpoint, the base key reached since, and the stored samples.

    ``entries`` are ``(ts_us, metric, value)`` of every sample judged after the checkpoint
    (newer than its key); samples up to ``key`` go into the base, the rest form the horizon,
    and the current snapshot is the base with the horizon applied: the state ``judge``
    returned last, for the same rules. (A held doubtful sample the scheduled check judged as it
    is was recorded by a ``RELEASE`` entry, which no stored sample carries: until the station's
    next water level, a resumed state holds it back again; that next sample, being overdue,
    judges it as it is, so the outcome is the same.)
    """
    base = _clone_snapshot(point["base"])
    start = tuple(point["base_key"]) if point.get("base_key") is not None else None
    until = tuple(key) if key is not None else None
    horizon: list[list] = []
    run = _Run(int(2 * (expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S) * _US))
    for ts, metric, value in sorted(entries, key=lambda e: (e[0], e[1])):
        if metric not in JUDGED_METRICS or (start is not None and (ts, metric) <= start):
            continue
        if until is not None and (ts, metric) <= until:
            _apply(base, rules, [ts, metric, float(value)], None, run)
        else:
            horizon.append([ts, metric, float(value)])
    current = _clone_snapshot(base)
    marked = _Run(run.overdue_us, {})
    for entry in horizon:
        _apply(current, rules, entry, None, marked)
    held = base["quality"]["pend"]
    if held is not None:  # the base still holds a doubtful sample back: its mark is in the horizon's hands
        marked.marks.setdefault(held[0], qc.DOUBTFUL)
    marks = {str(ts): mark for ts, mark in marked.marks.items() if mark != qc.GOOD}
    return {"v": STATE_VERSION, "base": base, "base_key": list(until) if until is not None else None,
            "current": current, "horizon": horizon, "quality_marks": marks}


def levels_of(state: Mapping) -> dict[str, Level]:
    """The level of each kind in a whole state."""
    return {kind: Level(state["current"]["kinds"][kind]["level"]) for kind in ENGINE_KINDS}


def micros(ts: datetime) -> int:
    """Epoch microseconds of a timezone-aware time (the engine's time keys)."""
    return _us(ts)


def from_micros(us: int) -> datetime:
    """The UTC time of epoch microseconds."""
    return _dt(us)


def load_state(state: Mapping | None) -> dict:
    """A private, current-version copy of a whole stored state (version 1 is migrated); new if None."""
    return _load(state)


def forget(state: Mapping | None, kind: str) -> dict:
    """``state`` with ``kind`` back at normal and its samples so far ignored: the next one is judged afresh.

    For an alert closed by hand (spec section 10). The mark (``forgotten_until``, the newest
    sample time judged) stays in both snapshots, so a replay of stored samples (a late sample,
    or ``resume`` after a restart) does not bring the old level back.
    """
    st = _load(state)
    last = st["current"]["last"]
    until = last[0] if last is not None else None
    for snap in (st["base"], st["current"]):
        fresh = _new_machine()
        if "rise" in snap["kinds"][kind]:
            fresh["rise"] = {"on": False, "below_since": None}
        fresh["forgotten_until"] = until
        snap["kinds"][kind] = fresh
    return st


# --- the level machine ------------------------------------------------------------


def _machine_step(machine: dict, ts: int, conds: list, hold_s: float, clear_hold_s: float) -> int:
    """Advance one kind's threshold timers to ``ts`` and return its threshold level.

    ``conds[i]`` is None when WARNING_LEVELS[i] is not used, else ``(at_or_above_entry,
    below_clear_line)``. A level is entered once its entry condition has held for
    ``hold_s``; a level is kept until its clear condition has held for ``clear_hold_s``.
    """
    up, down = machine["above_since"], machine["below_since"]
    for i, cond in enumerate(conds):
        if cond is None:
            up[i] = down[i] = None
            continue
        is_up, is_down = cond
        up[i] = (up[i] if up[i] is not None else ts) if is_up else None
        down[i] = (down[i] if down[i] is not None else ts) if is_down else None
    hold, clear = hold_s * _US, clear_hold_s * _US
    entered = 0
    for i, cond in enumerate(conds):
        if cond is not None and up[i] is not None and ts - up[i] >= hold:
            entered = i + 1
    kept = 0
    for i in range(machine["threshold_level"]):
        if conds[i] is None:
            continue
        if down[i] is not None and ts - down[i] >= clear:
            continue
        kept = i + 1
    machine["threshold_level"] = max(entered, kept)
    return machine["threshold_level"]


_THRESHOLDS: dict[int, tuple] = {}  # id(rule) -> (rule, its thresholds by WARNING_LEVELS)


def _thresholds(rule) -> tuple:
    """A rule's entry values for WARNING_LEVELS (None: level not used), looked up once per rule object."""
    if rule is None:
        return (None,) * len(WARNING_LEVELS)
    known = _THRESHOLDS.get(id(rule))
    if known is None or known[0] is not rule:  # an id can be reused once a rule object is gone
        if len(_THRESHOLDS) > 1024:
            _THRESHOLDS.clear()
        known = _THRESHOLDS[id(rule)] = (rule, tuple(rule.threshold(level) for level in WARNING_LEVELS))
    return known[1]


def _water_level_step(snap: dict, rules: Rules, ts: int, value: float) -> dict | None:
    """Judge one water level; return what its reading adds (the rise rate, when known)."""
    machine = snap["kinds"]["water_level"]
    buf = snap["water_levels"]
    buf.append([ts, value])
    oldest = ts - RISE_WINDOW_S * _US
    drop = 0
    while buf[drop][0] < oldest:
        drop += 1
    if drop:
        del buf[:drop]
    rate = None
    ref_ts, ref_value = buf[0]
    if ts - ref_ts >= RISE_MIN_SPAN_S * _US:
        rate = (value - ref_value) / ((ts - ref_ts) / (3600 * _US))
    rule = rules.water_level
    conds: list = []
    for threshold in _thresholds(rule):
        conds.append(None if threshold is None else (value >= threshold, value < threshold - rule.clear_margin))
    tl = _machine_step(machine, ts, conds, rule.hold_s if rule else 0, rule.clear_hold_s if rule else 0)
    rise = machine["rise"]
    if rule is None or rule.rise_rate is None:
        rise["on"], rise["below_since"] = False, None
    elif rate is not None:
        if rate >= rule.rise_rate.per_hour:
            rise["on"], rise["below_since"] = True, None
        elif rise["on"]:
            rise["below_since"] = rise["below_since"] if rise["below_since"] is not None else ts
            if ts - rise["below_since"] >= rule.clear_hold_s * _US:
                rise["on"], rise["below_since"] = False, None
    floor = int(rule.rise_rate.level) if rise["on"] and rule and rule.rise_rate else 0
    machine["level"] = max(tl, floor)
    return None if rate is None else {"rate_per_hour": round(rate, 4)}


def _rain_sums(buf: list, ts: int) -> dict[str, float]:
    """Rolling sums over (ts - window, ts] of a time-sorted rain buffer."""
    limits = sorted(RAIN_WINDOWS.items(), key=lambda item: item[1])
    sums = {name: 0.0 for name in RAIN_WINDOWS}
    total = 0.0
    index = 0
    for entry_ts, amount in reversed(buf):
        while index < len(limits) and entry_ts <= ts - limits[index][1] * _US:
            sums[limits[index][0]] = total
            index += 1
        if index == len(limits):
            break
        total += amount
    for name, _seconds in limits[index:]:
        sums[name] = total
    return sums


def _rainfall_step(snap: dict, rules: Rules, ts: int, value: float) -> dict:
    """Judge one rain increment by the rolling sums it completes."""
    machine = snap["kinds"]["rainfall"]
    buf = snap["rain"]
    buf.append([ts, value])
    oldest = ts - RAIN_BUFFER_S * _US
    drop = 0
    while buf[drop][0] <= oldest:
        drop += 1
    if drop:
        del buf[:drop]
    sums = _rain_sums(buf, ts)
    rule = rules.rainfall
    conds: list = []
    windows = [(sums[window.name], _thresholds(window)) for window in rule.windows] if rule else []
    for index in range(len(WARNING_LEVELS)):
        pairs = [(total, limits[index]) for total, limits in windows if limits[index] is not None]
        if not pairs:
            conds.append(None)
            continue
        reached = any(total >= threshold for total, threshold in pairs)
        conds.append((reached, not reached))
    machine["level"] = _machine_step(machine, ts, conds, 0, rule.clear_hold_s if rule else 0)
    return {"sums": sums}  # rounded only for a reading that is kept (see _apply)


def _battery_step(snap: dict, rules: Rules, ts: int, value: float) -> None:
    """Judge one supply voltage: below ``low`` is a battery problem (level waspada)."""
    machine = snap["kinds"]["battery"]
    rule = rules.battery
    conds: list = [None, None, None]
    if rule is not None:
        conds[0] = (value < rule.low, value >= rule.low + rule.clear_margin)
    machine["level"] = _machine_step(machine, ts, conds, 0, 0)
    return None


_STEPS = {"water_level": _water_level_step, "rainfall": _rainfall_step, "battery": _battery_step}


@dataclasses.dataclass
class _Run:
    """What one pass over samples needs besides the rules: the overdue time, and where marks go."""

    overdue_us: int
    marks: dict[int, str] | None = None  # water-level ts -> quality mark decided in this pass


def _apply(snap: dict, rules: Rules, entry: list, events: list[EngineEvent] | None, run: _Run) -> None:
    """Apply one entry ``[ts, metric, value]`` to ``snap``: water levels through the quality check first."""
    ts, metric, value = entry
    snap["last"] = [ts, metric]
    if metric == RELEASE:
        if rules.quality is not None:
            _after_check(snap, rules, qc.release(snap["quality"], ts, run.overdue_us), ts, None, events, run)
        return
    if metric == "water_level" and rules.quality is not None:
        admission = qc.admit(snap["quality"], rules.quality, ts, value, run.overdue_us)
        _after_check(snap, rules, admission, ts, value, events, run)
        return
    _judge_sample(snap, rules, entry, events)


def _judge_sample(snap: dict, rules: Rules, entry: list, events: list[EngineEvent] | None) -> None:
    """Judge one sample; record an event if its kind's level changed."""
    ts, metric, value = entry
    machine = snap["kinds"][metric]
    if machine.get("forgotten_until") is not None and ts <= machine["forgotten_until"]:
        return  # judged before its alert was closed by hand (``forget``)
    before = machine["level"]
    extra = _STEPS[metric](snap, rules, ts, value)
    if machine["level"] != before:
        # The reading is built only when it is kept (the cause of a level): most samples change nothing.
        reading = {"metric": metric, "value": value, "ts": iso(ts)}
        if extra is not None:
            reading.update(extra if "sums" not in extra
                           else {"sums": {name: round(total, 3) for name, total in extra["sums"].items()}})
        machine["cause"] = reading
        if events is not None:
            events.append(EngineEvent(metric, event_type(before, machine["level"]), Level(machine["level"]), _dt(ts), reading))


def _after_check(snap: dict, rules: Rules, admission: qc.Admission, ts: int, value: float | None,
                 events: list[EngineEvent] | None, run: _Run) -> None:
    """Judge what the quality check let through, note what it holds back, and move the sensor level."""
    q = snap["quality"]
    for judged_ts, judged_value in admission.judge:
        _judge_sample(snap, rules, [judged_ts, "water_level", judged_value], events)
        qc.track_flatline(q, rules.quality, judged_ts, judged_value)
    if admission.held:
        # What the held sample would do to the water level: staff are told at once if it raises it.
        trial = {"kinds": {"water_level": _clone_machine(snap["kinds"]["water_level"])},
                 "water_levels": [list(e) for e in snap["water_levels"]]}
        _water_level_step(trial, rules, ts, value)
        q["pend"][2] = trial["kinds"]["water_level"]["level"]
    if run.marks is not None:
        for mark_ts, mark in admission.marks:
            run.marks[mark_ts] = mark
    _sensor_step(snap, ts, value, admission, events)


def _sensor_step(snap: dict, ts: int, value: float | None, admission: qc.Admission,
                 events: list[EngineEvent] | None) -> None:
    """The ``sensor`` level: waspada while a held sample would raise the water level, or while it is stuck."""
    q, machine = snap["quality"], snap["kinds"]["sensor"]
    pend = q["pend"]
    doubt = pend is not None and pend[2] is not None and pend[2] > snap["kinds"]["water_level"]["level"]
    level = 1 if doubt or q["stuck"] else 0
    before = machine["level"]
    if level == before:
        return
    at = ts
    if doubt and not q["stuck"]:
        at = pend[0]
        reading = {"metric": "water_level", "value": pend[1], "ts": iso(pend[0]), "quality": qc.DOUBTFUL,
                   "would_be": Level(pend[2]).label}
    elif level:
        reading = {"metric": "water_level", "value": value, "ts": iso(ts), "flatline_s": qc.stuck_for_s(q, ts),
                   "since": iso(q["flat"][0])}
    else:
        ended = "flatline" if machine["cause"] and "flatline_s" in machine["cause"] else "doubtful"
        reading = {"metric": "water_level", "value": value, "ts": iso(ts), "ended": ended}
        if ended == "doubtful" and admission.ended:
            reading["quality"] = admission.ended  # what the held sample turned out to be
    machine["level"] = machine["threshold_level"] = level
    machine["cause"] = reading
    if events is not None:
        events.append(EngineEvent("sensor", event_type(before, level), Level(level), _dt(at), reading))


# --- judge ------------------------------------------------------------------------


def judge(rules: Rules, state: dict | None, samples: Iterable[Sample], *, take_state: bool = False,
          expected_interval_s: float | None = None, now: datetime | None = None) -> Judgement:
    """Judge newly stored samples of one station; return the new state, events and levels.

    ``take_state=True`` lets the engine reuse ``state`` instead of copying it (the caller
    gives up the dict, e.g. one freshly decoded from the database): it saves copying the
    whole horizon on every batch. A doubtful water level with no next sample within two
    ``expected_interval_s`` is judged as it is; with ``now`` (the scheduled check) that
    happens even without a new sample.
    """
    if take_state and is_full_state(state):
        st = state
        _upgrade(st)
    else:
        st = _load(state)
    overdue_us = int(2 * (expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S) * _US)
    release_at = _us(now) if now is not None and rules.quality is not None else None
    in_order, late, ignored = _sort_incoming(st, samples, overdue_us, release_at)
    events: list[EngineEvent] = []
    old_marks = {int(ts): mark for ts, mark in st["quality_marks"].items()}
    marks = dict(old_marks)
    if late:
        events.extend(_replay_with_late(st, rules, late, _Run(overdue_us, marks)))
    cur = st["current"]
    run = _Run(overdue_us, marks)
    for entry in in_order:
        _apply(cur, rules, entry, events, run)
    due = qc.overdue_at(cur["quality"], overdue_us)
    if release_at is not None and due is not None and due <= release_at and (due, RELEASE) > tuple(cur["last"]):
        in_order.append([due, RELEASE, 0.0])  # held by this very batch, and already overdue
        _apply(cur, rules, in_order[-1], events, run)
    marks = {ts: mark for ts, mark in marks.items() if mark != qc.GOOD}
    changed = {_dt(ts): marks.get(ts, qc.GOOD) for ts in set(old_marks) | set(marks)
               if old_marks.get(ts, qc.GOOD) != marks.get(ts, qc.GOOD)}
    st["horizon"].extend(in_order)
    _advance_base(st, rules, overdue_us, marks)
    st["quality_marks"] = {str(ts): mark for ts, mark in marks.items()}
    levels = {kind: Level(cur["kinds"][kind]["level"]) for kind in ENGINE_KINDS}
    due = qc.overdue_at(cur["quality"], overdue_us) if rules.quality is not None else None
    return Judgement(state=st, events=events, levels=levels, ignored=ignored, quality=changed,
                     overdue_at=_dt(due) if due is not None else None)


def _upgrade(st: dict) -> None:
    """Give a state made before the quality check what it lacks (in place): its levels carry on."""
    st.setdefault("quality_marks", {})
    for snap in (st["base"], st["current"]):
        snap.setdefault("quality", qc.new_quality())
        for kind in ENGINE_KINDS:
            if kind not in snap["kinds"]:
                snap["kinds"][kind] = _new_machine()


def _sort_incoming(st: dict, samples: Iterable[Sample], overdue_us: int,
                   release_at: int | None) -> tuple[list[list], list[list], int]:
    """Split the judged samples, in time order, into in-order ones, late ones inside the horizon and ignored ones.

    Returns ``(in_order, late, ignored)``; a late sample the horizon already holds is dropped (a duplicate).
    With ``release_at`` (now, in us) a held doubtful sample overdue by then comes as a ``RELEASE`` entry.
    """
    last = tuple(st["current"]["last"]) if st["current"]["last"] is not None else None
    base_key = tuple(st["base_key"]) if st["base_key"] is not None else None
    incoming: dict[tuple[int, str], float] = {}
    for sample in samples:
        if sample.metric in JUDGED_METRICS:
            incoming[(_us(sample.ts), sample.metric)] = float(sample.value)
    due = qc.overdue_at(st["current"].get("quality"), overdue_us)
    if release_at is not None and due is not None and due <= release_at:
        incoming[(due, RELEASE)] = 0.0  # the station fell silent after a doubtful sample
    ignored = 0
    in_order: list[list] = []
    late: list[list] = []
    seen = None
    for key in sorted(incoming):
        if last is None or key > last:
            in_order.append([key[0], key[1], incoming[key]])
            continue
        if base_key is not None and key <= base_key:
            ignored += 1  # older than the horizon (or already folded into the base)
            continue
        if seen is None:
            seen = {(e[0], e[1]) for e in st["horizon"]}
        if key not in seen:
            late.append([key[0], key[1], incoming[key]])
    return in_order, late, ignored


def _replay_with_late(st: dict, rules: Rules, late: list[list], run: _Run) -> list[EngineEvent]:
    """Replay the horizon with the late samples in place, as if they had come on time; one event per changed kind.

    The quality marks of the horizon are decided again (``run.marks``): marks of samples folded
    into the base stay, unless the replay decides them (a sample the base still holds back).
    """
    cur = st["current"]
    merged = sorted(st["horizon"] + late, key=lambda e: (e[0], e[1]))
    replay = _clone_snapshot(st["base"])
    base_ts = st["base_key"][0] if st["base_key"] is not None else None
    kept = {ts: m for ts, m in run.marks.items() if base_ts is not None and ts <= base_ts}
    run.marks.clear()
    run.marks.update(kept)
    for entry in merged:
        _apply(replay, rules, entry, None, run)
    events: list[EngineEvent] = []
    for kind in ENGINE_KINDS:
        before, after = cur["kinds"][kind]["level"], replay["kinds"][kind]
        if after["level"] != before:
            # Kinds are independent, so only a kind with late samples can change here. Name
            # the reading that caused the new level, or the late one if the replay merely
            # undid a change (the level is the base's again).
            reading = after["cause"]
            if reading is None or reading is st["base"]["kinds"][kind]["cause"]:
                reading = _latest_reading(late, kind)
            at = _dt(_parse_iso_us(reading["ts"]))
            events.append(EngineEvent(kind, event_type(before, after["level"]), Level(after["level"]), at, reading))
    st["current"] = replay
    st["horizon"] = merged
    return events


def _advance_base(st: dict, rules: Rules, overdue_us: int, marks: dict[int, str]) -> None:
    """Fold samples older than the horizon into the base snapshot (each exactly once)."""
    horizon = st["horizon"]
    if not horizon:
        return
    cutoff = horizon[-1][0] - HORIZON_S * _US
    count = 0
    while count < len(horizon) and horizon[count][0] < cutoff:
        _apply(st["base"], rules, horizon[count], None, _Run(overdue_us))
        count += 1
    if count:
        st["base_key"] = [horizon[count - 1][0], horizon[count - 1][1]]
        del horizon[:count]
        # A folded sample's mark can no longer change, unless the base still holds it back.
        held = st["base"]["quality"]["pend"][0] if st["base"]["quality"]["pend"] is not None else None
        for ts in [ts for ts in marks if ts <= st["base_key"][0] and ts != held]:
            del marks[ts]


def _latest_reading(entries: list[list], kind: str) -> dict | None:
    for ts, metric, value in reversed(entries):
        if metric == RELEASE and kind in ("water_level", "sensor"):
            return {"metric": "water_level", "value": None, "ts": iso(ts)}
        if kind == "sensor" and metric == "water_level":  # the sensor kind judges water levels
            return {"metric": metric, "value": value, "ts": iso(ts)}
        if metric == kind:
            return {"metric": metric, "value": value, "ts": iso(ts)}
    return None


def _parse_iso_us(text: str) -> int:
    return _us(datetime.fromisoformat(text.replace("Z", "+00:00")))


def current_rain_sums(state: dict | None) -> dict[str, float] | None:
    """The rolling rainfall sums at the newest rain sample of a stored state (for reminders)."""
    if state and state.get("v") == 1:
        state = _from_v1(state)
    if not is_full_state(state) or not state["current"]["rain"]:
        return None
    buf = state["current"]["rain"]
    return {name: round(total, 3) for name, total in _rain_sums(buf, buf[-1][0]).items()}
