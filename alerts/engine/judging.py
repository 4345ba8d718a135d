"""``judge``: one batch of a station's samples, in its phases.

The phases: sort the incoming samples (in order, late inside the horizon, too old); replay the
horizon with the late ones in place; apply the in-order ones (and a release of a held sample
now overdue); note the quality marks that changed; fold what fell out of the horizon into the base.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from operator import lt

from alerts import quality as qc
from alerts.engine import folding
from alerts.engine.model import (DEFAULT_EXPECTED_INTERVAL_S, ENGINE_KINDS, HORIZON_S, JUDGED_METRICS, RELEASE, US,
                                 EngineEvent, Judgement, event_type, from_micros, iso, micros, parse_iso_us)
from alerts.engine.state import clone_snapshot, is_full_state, kept_decisions, levels_of, load_state, upgrade
from alerts.engine.steps import Run, apply_entry
from alerts.levels import Level
from alerts.model import Sample
from alerts.rules import Rules


def judge(rules: Rules, state: dict | None, samples: Iterable[Sample], *, take_state: bool = False,
          expected_interval_s: float | None = None, now: datetime | None = None,
          defer_fold: bool = False) -> Judgement:
    """Judge newly stored samples of one station; return the new state, events and levels.

    ``take_state=True`` lets the engine reuse ``state`` instead of copying it (the caller
    gives up the dict, e.g. one freshly decoded from the database): it saves copying the
    whole horizon on every batch. A doubtful water level with no next sample within two
    ``expected_interval_s`` is judged as it is; with ``now`` (the scheduled check) that
    happens even without a new sample. ``defer_fold=True`` (a caller holding its states in
    memory): the returned state may be a deferred one (``alerts.engine.folding``): the same
    judgements, without judging each sample again as it leaves the horizon.
    """
    if take_state and is_full_state(state):
        st = state
        upgrade(st)
    else:
        st = load_state(state)
    overdue_us = int(2 * (expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S) * US)
    release_at = micros(now) if now is not None and rules.quality is not None else None
    in_order, late, ignored = _sort_incoming(st, samples, overdue_us, release_at)
    if "base_at" in st and (late or not defer_fold):
        _settle(st, rules, overdue_us)  # a replay starts from the exact base
    events: list[EngineEvent] = []
    old_marks = {int(ts): mark for ts, mark in st["quality_marks"].items()}
    marks = dict(old_marks)
    if late:
        folding.forget_stops_from(st, late[0])
        events.extend(_replay_with_late(st, rules, late, Run(overdue_us, marks)))
    cur = st["current"]
    run = Run(overdue_us, marks)
    if defer_fold:
        folding.apply_in_order(st, rules, in_order, events, run)
    else:
        for entry in in_order:
            apply_entry(cur, rules, entry, events, run)
    due = qc.overdue_at(cur["quality"], overdue_us)
    if release_at is not None and due is not None and due <= release_at and (due, RELEASE) > tuple(cur["last"]):
        in_order.append([due, RELEASE, 0.0])  # held by this very batch, and already overdue
        apply_entry(cur, rules, in_order[-1], events, run)
    marks = {ts: mark for ts, mark in marks.items() if mark != qc.GOOD}
    changed = {from_micros(ts): marks.get(ts, qc.GOOD) for ts in set(old_marks) | set(marks)
               if old_marks.get(ts, qc.GOOD) != marks.get(ts, qc.GOOD)}
    st["horizon"].extend(in_order)
    if not defer_fold:
        folding.fold(st, rules, overdue_us, marks)
    else:
        folding.jump(st, marks)
        if ignored:  # the caller writes a checkpoint past the samples not judged: it must be exact
            folding.settle(st, rules, overdue_us, marks)
    st["quality_marks"] = {str(ts): mark for ts, mark in marks.items()}
    _forget_kept(st)
    levels = levels_of(st)
    due = qc.overdue_at(cur["quality"], overdue_us) if rules.quality is not None else None
    return Judgement(state=st, events=events, levels=levels, ignored=ignored, quality=changed,
                     overdue_at=from_micros(due) if due is not None else None)


def settled(rules: Rules, state: dict, *, expected_interval_s: float | None = None) -> dict:
    """A copy of ``state`` made exact: what ``judge`` without ``defer_fold`` would have returned."""
    st = load_state(state)
    _settle(st, rules, int(2 * (expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S) * US))
    return st


def _settle(st: dict, rules: Rules, overdue_us: int) -> None:
    """Make a deferred state exact before it is judged the exact way (its marks are kept by text keys)."""
    marks = {int(ts): mark for ts, mark in st["quality_marks"].items()}
    folding.settle(st, rules, overdue_us, marks)
    st["quality_marks"] = {str(ts): mark for ts, mark in marks.items()}


def _sort_incoming(st: dict, samples: Iterable[Sample], overdue_us: int,
                   release_at: int | None) -> tuple[list[list], list[list], int]:
    """Split the judged samples, in time order, into in-order ones, late ones inside the horizon and ignored ones.

    Returns ``(in_order, late, ignored)``; a late sample the horizon already holds is dropped (a duplicate).
    With ``release_at`` (now, in us) a held doubtful sample overdue by then comes as a ``RELEASE`` entry.
    """
    last = tuple(st["current"]["last"]) if st["current"]["last"] is not None else None
    base_key = tuple(st["base_key"]) if st["base_key"] is not None else None
    due = qc.overdue_at(st["current"].get("quality"), overdue_us)
    silent = release_at is not None and due is not None and due <= release_at  # silent after a doubtful sample
    entries = _time_ordered(samples, due if silent else None)
    start = 0  # the entries up to ``last`` are late or too old; the rest are in order
    if last is not None:
        while start < len(entries) and (entries[start][0], entries[start][1]) <= last:
            start += 1
    ignored = 0
    late: list[list] = []
    seen = None
    for entry in entries[:start]:
        key = (entry[0], entry[1])
        if base_key is not None and key <= base_key:
            ignored += 1  # older than the horizon (or already folded into the base)
            continue
        if seen is None:
            seen = {(e[0], e[1]) for e in st["horizon"]}
        if key not in seen:
            late.append(entry)
    return entries[start:], late, ignored


def _time_ordered(samples: Iterable[Sample], release: int | None) -> list[list]:
    """The judged samples (and a ``RELEASE`` at ``release``) as entries ``[us, metric, value]`` in time order.

    Of two samples with one key, the one given later counts.
    """
    entries = [[micros(sample.ts), sample.metric, float(sample.value)] for sample in samples
               if sample.metric in JUDGED_METRICS]
    if release is not None:
        entries.append([release, RELEASE, 0.0])
    times = [entry[0] for entry in entries]
    if all(map(lt, times, times[1:])):
        return entries  # the common case: each later than the one before (a gateway sends in time order)
    incoming = {(ts, metric): value for ts, metric, value in entries}
    return [[ts, metric, value] for (ts, metric), value in sorted(incoming.items())]


def _replay_with_late(st: dict, rules: Rules, late: list[list], run: Run) -> list[EngineEvent]:
    """Replay the horizon with the late samples in place, as if they had come on time; one event per changed kind.

    The quality marks of the horizon are decided again (``run.marks``): marks of samples folded
    into the base stay, unless the replay decides them (a sample the base still holds back). A
    water level judged before is judged again, with its mark, even where the late ones make its step
    too big (``_judged_before``): a doubt found after the fact does not retract what residents were told.
    """
    cur = st["current"]
    merged = sorted(st["horizon"] + late, key=lambda e: (e[0], e[1]))
    replay = clone_snapshot(st["base"])
    base_ts = st["base_key"][0] if st["base_key"] is not None else None
    kept = {ts: m for ts, m in run.marks.items() if base_ts is not None and ts <= base_ts}
    run.keep, run.kept = _judged_before(st, rules, merged, run), {}
    run.marks.clear()
    run.marks.update(kept)
    for entry in merged:
        apply_entry(replay, rules, entry, None, run)
    folded = tuple(st["base_key"]) if st["base_key"] is not None else None
    run.kept.update({ts: m for ts, m in kept_decisions(st).items() if folded and (ts, "water_level") <= folded})
    st["kept"] = {str(ts): mark for ts, mark in sorted(run.kept.items())}
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
            at = from_micros(parse_iso_us(reading["ts"]))
            events.append(EngineEvent(kind, event_type(before, after["level"]), Level(after["level"]), at, reading))
    st["current"] = replay
    st["horizon"] = merged
    return events


def _judged_before(st: dict, rules: Rules, merged: list[list], run: Run) -> dict[int, str]:
    """The horizon's water levels the current snapshot judged (ts -> mark) that the replay must keep judged.

    All but spikes and the one held back; except those the next entry of the replay confirms if they
    are held back (judged anyway, the way they were when they came in measurement order).
    """
    if rules.quality is None:
        return {}
    held = st["current"]["quality"]["pend"]
    held_ts = held[0] if held is not None else None
    judged = {ts: run.marks.get(ts, qc.GOOD) for ts, metric, _value in st["horizon"]
              if metric == "water_level" and ts != held_ts and run.marks.get(ts, qc.GOOD) != qc.SPIKE}
    following = None  # the next water level or release after the entry, going backwards
    for entry in reversed(merged):
        ts, metric, value = entry
        if metric == "water_level" and ts in judged and following is not None and following[1] == "water_level" \
                and following[0] - ts <= run.overdue_us and qc.within_step(rules.quality, [ts, value], *following[::2]):
            del judged[ts]
        if metric in ("water_level", RELEASE):
            following = entry
    return judged


def _forget_kept(st: dict) -> None:
    """Drop the kept decisions a horizon behind the base (a store's checkpoint lags its base far less)."""
    if not st.get("kept"):
        st.pop("kept", None)
        return
    if st["base_key"] is not None:
        since = st["base_key"][0] - HORIZON_S * US
        st["kept"] = {ts: mark for ts, mark in st["kept"].items() if int(ts) >= since}
    if not st["kept"]:
        del st["kept"]


def _latest_reading(entries: list[list], kind: str) -> dict | None:
    """The newest of ``entries`` that ``kind`` judges, as a reading."""
    for ts, metric, value in reversed(entries):
        if metric == RELEASE and kind in ("water_level", "sensor"):
            return {"metric": "water_level", "value": None, "ts": iso(ts)}
        if kind == "sensor" and metric == "water_level":  # the sensor kind judges water levels
            return {"metric": metric, "value": value, "ts": iso(ts)}
        if metric == kind:
            return {"metric": metric, "value": value, "ts": iso(ts)}
    return None
