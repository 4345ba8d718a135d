"""One entry applied to a snapshot: water levels through the quality check, each metric by its step.

A level change makes an event (when the caller collects them) and keeps the reading that
caused it; the ``sensor`` kind follows what the quality check holds back or finds stuck.
"""

from __future__ import annotations

import dataclasses

from alerts import quality as qc
from alerts.engine.machine import machine_step
from alerts.engine.model import RELEASE, EngineEvent, event_type, from_micros, iso
from alerts.engine.rain import rainfall_step
from alerts.engine.state import clone_machine
from alerts.engine.water import water_level_step
from alerts.levels import Level
from alerts.rules import Rules


def battery_step(snap: dict, rules: Rules, ts: int, value: float) -> None:
    """Judge one supply voltage: below ``low`` is a battery problem (level waspada)."""
    machine = snap["kinds"]["battery"]
    rule = rules.battery
    conds: list = [None, None, None]
    if rule is not None:
        conds[0] = (value < rule.low, value >= rule.low + rule.clear_margin)
    machine["level"] = machine_step(machine, ts, conds, 0, 0)
    return None


def _rate_detail(rate: float | None) -> dict | None:
    """A water level's reading: its rise rate, when known."""
    return None if rate is None else {"rate_per_hour": round(rate, 4)}


def _sums_detail(sums: dict[str, float]) -> dict:
    """A rain increment's reading: the rolling sums."""
    return {"sums": {name: round(total, 3) for name, total in sums.items()}}


def _no_detail(_nothing: None) -> None:
    """A battery reading adds nothing."""
    return None


# Per metric: its step, and what the step's outcome adds to a reading that is kept (the cause of a level).
_STEPS = {"water_level": (water_level_step, _rate_detail), "rainfall": (rainfall_step, _sums_detail),
          "battery": (battery_step, _no_detail)}


@dataclasses.dataclass
class Run:
    """What one pass over samples needs besides the rules: the overdue time, and where marks go."""

    overdue_us: int
    marks: dict[int, str] | None = None  # water-level ts -> quality mark decided in this pass
    keep: dict[int, str] | None = None  # water-level ts -> mark of a decision this pass keeps (``qc.admit``)
    kept: dict[int, str] | None = None  # where the decisions ``keep`` overruled go (a replay's new ``kept``)


def apply_entry(snap: dict, rules: Rules, entry: list, events: list[EngineEvent] | None, run: Run) -> None:
    """Apply one entry ``[ts, metric, value]`` to ``snap``: water levels through the quality check first."""
    ts, metric, value = entry
    snap["last"] = [ts, metric]
    if metric == RELEASE:
        if rules.quality is not None:
            _after_check(snap, rules, qc.release(snap["quality"], ts, run.overdue_us), ts, None, events, run)
        return
    check = rules.quality
    if metric == "water_level" and check is not None:
        q = snap["quality"]
        if qc.admits_at_once(q, check, ts, value):
            # Most water levels: judged now, no mark, nothing held (what ``_after_check`` does for them).
            _judge_sample(snap, rules, entry, events)
            stuck = qc.track_flatline(q, check, ts, value)
            if stuck != snap["kinds"]["sensor"]["level"]:  # nothing is held: the sensor level is 1 while stuck
                _sensor_step(snap, ts, value, qc.PLAIN, events)
            return
        keep = run.keep.get(ts) if run.keep else None
        admission = qc.admit(q, check, ts, value, run.overdue_us, keep)
        if admission.kept and run.kept is not None:
            run.kept[ts] = keep
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
    step, detail = _STEPS[metric]
    outcome = step(snap, rules, ts, value)
    if machine["level"] != before:
        # The reading is built only when it is kept (the cause of a level): most samples change nothing.
        reading = {"metric": metric, "value": value, "ts": iso(ts)}
        extra = detail(outcome)
        if extra is not None:
            reading.update(extra)
        machine["cause"] = reading
        if events is not None:
            events.append(EngineEvent(metric, event_type(before, machine["level"]), Level(machine["level"]),
                                      from_micros(ts), reading))


def _after_check(snap: dict, rules: Rules, admission: qc.Admission, ts: int, value: float | None,
                 events: list[EngineEvent] | None, run: Run) -> None:
    """Judge what the quality check let through, note what it holds back, and move the sensor level."""
    q = snap["quality"]
    for judged_ts, judged_value in admission.judge:
        _judge_sample(snap, rules, [judged_ts, "water_level", judged_value], events)
        qc.track_flatline(q, rules.quality, judged_ts, judged_value)
    if admission.held:
        # What the held sample would do to the water level: staff are told at once if it raises it.
        trial = {"kinds": {"water_level": clone_machine(snap["kinds"]["water_level"])},
                 "water_levels": [list(e) for e in snap["water_levels"]]}
        water_level_step(trial, rules, ts, value)
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
        events.append(EngineEvent("sensor", event_type(before, level), Level(level), from_micros(at), reading))
