"""The rules engine: judges one station's samples against its rules (spec section 3).

``judge(rules, state, samples)`` is a pure function. ``state`` is what the previous call
returned (a JSON-serialisable dict, stored in ``station_state.engine``) or None for a new
station. Samples are judged by measurement time. The design (docs/rules.md):

* A *snapshot* is everything the judgement of the next sample needs: per kind the level,
  the hold and clear timers of each threshold, the reading that caused the level; the
  last hour of water levels (rise rate) and the last 24 h of rain increments (rolling
  sums). Its size is bounded by those windows, never by the station's history.
* The state keeps two snapshots: ``cur`` (after every sample seen) and ``base`` (after
  every sample older than ``HORIZON_S`` before the newest one), plus the samples in
  between (``hz``). An in-order sample is applied to ``cur``. A late sample inside the
  horizon makes the engine replay ``base`` + the horizon samples in time order, so the
  outcome is the same as if it had arrived on time. A sample older than the horizon is
  not judged (``Judgement.ignored`` counts it); it is still stored by the caller.
* Events come from level changes: each in-order sample that changes a kind's level
  yields one event; after a replay, a kind whose current level differs from before
  yields one event naming the reading that caused the new level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from alerts.levels import WARNING_LEVELS, Level
from alerts.model import PUBLIC_ALERT_KINDS, Sample
from alerts.rules import RAIN_WINDOWS, Rules
from alerts.times import rfc3339

STATE_VERSION = 1
HORIZON_S = 6 * 3600  # how late a sample may arrive and still be judged
RISE_WINDOW_S = 3600  # the rise rate compares with the sample about an hour earlier...
RISE_MIN_SPAN_S = 1800  # ...and needs at least half an hour of span (10-minute noise)
RAIN_BUFFER_S = 24 * 3600  # the longest rainfall window

# The kinds the engine judges, and the metric each one reads.
ENGINE_KINDS = ("water_level", "rainfall", "battery")
PUBLIC_ENGINE_KINDS = tuple(kind for kind in ENGINE_KINDS if kind in PUBLIC_ALERT_KINDS)  # the flood level
JUDGED_METRICS = ENGINE_KINDS

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
    # up[i] / down[i]: since when (us) the value has been continuously at or above the
    # entry line / below the clear line of WARNING_LEVELS[i]; None when it is not.
    # tl: level from thresholds alone; level: the kind's level (with the rise rate).
    return {"level": 0, "tl": 0, "up": [None, None, None], "down": [None, None, None], "cause": None}


def _new_snapshot() -> dict:
    machines = {kind: _new_machine() for kind in ENGINE_KINDS}
    machines["water_level"]["rise"] = {"on": False, "below": None}
    return {"k": machines, "wl": [], "rain": [], "last": None}


def _clone_snapshot(snap: dict) -> dict:
    machines = {}
    for kind, m in snap["k"].items():
        copy = {"level": m["level"], "tl": m["tl"], "up": list(m["up"]), "down": list(m["down"]),
                "cause": m["cause"]}
        if "rise" in m:
            copy["rise"] = dict(m["rise"])
        machines[kind] = copy
    return {
        "k": machines,
        "wl": [list(e) for e in snap["wl"]],
        "rain": [list(e) for e in snap["rain"]],
        "last": list(snap["last"]) if snap["last"] is not None else None,
    }


def new_state() -> dict:
    """The state of a station the engine has never seen."""
    return {"v": STATE_VERSION, "base": _new_snapshot(), "base_key": None, "cur": _new_snapshot(), "hz": []}


def _load(state: dict | None) -> dict:
    """A private copy of ``state`` (the caller's dict is never changed)."""
    if not state or state.get("v") != STATE_VERSION:
        return new_state()
    return {
        "v": STATE_VERSION,
        "base": _clone_snapshot(state["base"]),
        "base_key": list(state["base_key"]) if state.get("base_key") is not None else None,
        "cur": _clone_snapshot(state["cur"]),
        "hz": [list(e) for e in state["hz"]],
    }


# --- the level machine ------------------------------------------------------------


def _machine_step(m: dict, ts: int, conds: list, hold_s: float, clear_hold_s: float) -> int:
    """Advance one kind's threshold timers to ``ts`` and return its threshold level.

    ``conds[i]`` is None when WARNING_LEVELS[i] is not used, else ``(at_or_above_entry,
    below_clear_line)``. A level is entered once its entry condition has held for
    ``hold_s``; a level is kept until its clear condition has held for ``clear_hold_s``.
    """
    up, down = m["up"], m["down"]
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
    for i in range(m["tl"]):
        if conds[i] is None:
            continue
        if down[i] is not None and ts - down[i] >= clear:
            continue
        kept = i + 1
    m["tl"] = max(entered, kept)
    return m["tl"]


def _water_level_step(snap: dict, rules: Rules, ts: int, value: float) -> dict:
    """Judge one water level; return the reading (with the rise rate when known)."""
    m = snap["k"]["water_level"]
    buf = snap["wl"]
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
    for level in WARNING_LEVELS:
        threshold = rule.threshold(level) if rule else None
        conds.append(None if threshold is None else (value >= threshold, value < threshold - rule.clear_margin))
    tl = _machine_step(m, ts, conds, rule.hold_s if rule else 0, rule.clear_hold_s if rule else 0)
    rise = m["rise"]
    if rule is None or rule.rise_rate is None:
        rise["on"], rise["below"] = False, None
    elif rate is not None:
        if rate >= rule.rise_rate.per_hour:
            rise["on"], rise["below"] = True, None
        elif rise["on"]:
            rise["below"] = rise["below"] if rise["below"] is not None else ts
            if ts - rise["below"] >= rule.clear_hold_s * _US:
                rise["on"], rise["below"] = False, None
    floor = int(rule.rise_rate.level) if rise["on"] and rule and rule.rise_rate else 0
    m["level"] = max(tl, floor)
    reading = {"metric": "water_level", "value": value, "ts": iso(ts)}
    if rate is not None:
        reading["rate_per_hour"] = round(rate, 4)
    return reading


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
    m = snap["k"]["rainfall"]
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
    for level in WARNING_LEVELS:
        pairs = []
        for window in rule.windows if rule else ():
            threshold = window.threshold(level)
            if threshold is not None:
                pairs.append((sums[window.name], threshold))
        if not pairs:
            conds.append(None)
            continue
        reached = any(total >= threshold for total, threshold in pairs)
        conds.append((reached, not reached))
    m["level"] = _machine_step(m, ts, conds, 0, rule.clear_hold_s if rule else 0)
    return {"metric": "rainfall", "value": value, "ts": iso(ts),
            "sums": {name: round(total, 3) for name, total in sums.items()}}


def _battery_step(snap: dict, rules: Rules, ts: int, value: float) -> dict:
    """Judge one supply voltage: below ``low`` is a battery problem (level waspada)."""
    m = snap["k"]["battery"]
    rule = rules.battery
    conds: list = [None, None, None]
    if rule is not None:
        conds[0] = (value < rule.low, value >= rule.low + rule.clear_margin)
    m["level"] = _machine_step(m, ts, conds, 0, 0)
    return {"metric": "battery", "value": value, "ts": iso(ts)}


_STEPS = {"water_level": _water_level_step, "rainfall": _rainfall_step, "battery": _battery_step}


def _apply(snap: dict, rules: Rules, entry: list, events: list[EngineEvent] | None) -> None:
    """Apply one sample ``[ts, metric, value]`` to ``snap``; record an event if its kind's level changed."""
    ts, metric, value = entry
    m = snap["k"][metric]
    before = m["level"]
    reading = _STEPS[metric](snap, rules, ts, value)
    snap["last"] = [ts, metric]
    if m["level"] != before:
        m["cause"] = reading
        if events is not None:
            events.append(EngineEvent(metric, event_type(before, m["level"]), Level(m["level"]), _dt(ts), reading))


# --- judge ------------------------------------------------------------------------


def judge(rules: Rules, state: dict | None, samples: Iterable[Sample], *, take_state: bool = False) -> Judgement:
    """Judge newly stored samples of one station; return the new state, events and levels.

    ``take_state=True`` lets the engine reuse ``state`` instead of copying it (the caller
    gives up the dict, e.g. one freshly decoded from the database): it saves copying the
    whole horizon on every batch.
    """
    st = state if take_state and state and state.get("v") == STATE_VERSION else _load(state)
    in_order, late, ignored = _sort_incoming(st, samples)
    events: list[EngineEvent] = []
    if late:
        events.extend(_replay_with_late(st, rules, late))
    cur = st["cur"]
    for entry in in_order:
        _apply(cur, rules, entry, events)
    st["hz"].extend(in_order)
    _advance_base(st, rules)
    levels = {kind: Level(cur["k"][kind]["level"]) for kind in ENGINE_KINDS}
    return Judgement(state=st, events=events, levels=levels, ignored=ignored)


def _sort_incoming(st: dict, samples: Iterable[Sample]) -> tuple[list[list], list[list], int]:
    """Split the judged samples, in time order, into in-order ones, late ones inside the horizon and ignored ones.

    Returns ``(in_order, late, ignored)``; a late sample the horizon already holds is dropped (a duplicate).
    """
    last = tuple(st["cur"]["last"]) if st["cur"]["last"] is not None else None
    base_key = tuple(st["base_key"]) if st["base_key"] is not None else None
    incoming: dict[tuple[int, str], float] = {}
    for sample in samples:
        if sample.metric in JUDGED_METRICS:
            incoming[(_us(sample.ts), sample.metric)] = float(sample.value)
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
            seen = {(e[0], e[1]) for e in st["hz"]}
        if key not in seen:
            late.append([key[0], key[1], incoming[key]])
    return in_order, late, ignored


def _replay_with_late(st: dict, rules: Rules, late: list[list]) -> list[EngineEvent]:
    """Replay the horizon with the late samples in place, as if they had come on time; one event per changed kind."""
    cur = st["cur"]
    merged = sorted(st["hz"] + late, key=lambda e: (e[0], e[1]))
    replay = _clone_snapshot(st["base"])
    for entry in merged:
        _apply(replay, rules, entry, None)
    events: list[EngineEvent] = []
    for kind in ENGINE_KINDS:
        before, after = cur["k"][kind]["level"], replay["k"][kind]
        if after["level"] != before:
            # Kinds are independent, so only a kind with late samples can change here. Name
            # the reading that caused the new level, or the late one if the replay merely
            # undid a change (the level is the base's again).
            reading = after["cause"]
            if reading is None or reading is st["base"]["k"][kind]["cause"]:
                reading = _latest_reading(late, kind)
            at = _dt(_parse_iso_us(reading["ts"]))
            events.append(EngineEvent(kind, event_type(before, after["level"]), Level(after["level"]), at, reading))
    st["cur"] = replay
    st["hz"] = merged
    return events


def _advance_base(st: dict, rules: Rules) -> None:
    """Fold samples older than the horizon into the base snapshot (each exactly once)."""
    hz = st["hz"]
    if not hz:
        return
    cutoff = hz[-1][0] - HORIZON_S * _US
    count = 0
    while count < len(hz) and hz[count][0] < cutoff:
        _apply(st["base"], rules, hz[count], None)
        count += 1
    if count:
        st["base_key"] = [hz[count - 1][0], hz[count - 1][1]]
        del hz[:count]


def _latest_reading(entries: list[list], kind: str) -> dict | None:
    for ts, metric, value in reversed(entries):
        if metric == kind:
            return {"metric": metric, "value": value, "ts": iso(ts)}
    return None


def _parse_iso_us(text: str) -> int:
    return _us(datetime.fromisoformat(text.replace("Z", "+00:00")))


def current_rain_sums(state: dict | None) -> dict[str, float] | None:
    """The rolling rainfall sums at the newest rain sample of a stored state (for reminders)."""
    if not state or state.get("v") != STATE_VERSION or not state["cur"]["rain"]:
        return None
    buf = state["cur"]["rain"]
    return {name: round(total, 3) for name, total in _rain_sums(buf, buf[-1][0]).items()}
