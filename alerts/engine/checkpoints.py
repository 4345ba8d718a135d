"""Checkpoints: what a store keeps between judgements, and the whole state rebuilt from one.

A whole state holds up to 6 h of samples (the horizon) and 24 h of rain: writing it after
every batch costs more than judging. Everything in it follows from the base snapshot and
the samples judged after it, in time order (that is how a late sample is judged), so a
store keeps a *checkpoint* (the base snapshot and its key, rewritten now and then) plus
the samples it stores anyway, and ``resume`` rebuilds the same state from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from alerts import quality as qc
from alerts.engine.folding import point_key
from alerts.engine.model import DEFAULT_EXPECTED_INTERVAL_S, JUDGED_METRICS, STATE_VERSION, US
from alerts.engine.state import clone_snapshot
from alerts.engine.steps import Run, apply_entry
from alerts.rules import Rules


def checkpoint(state: Mapping, after_id: int | None = None) -> dict:
    """The checkpoint of a whole state: its base snapshot and the key of the newest sample in it.

    ``after_id``: for a base that holds no sample yet, the store's own marker of where this
    station's samples begin (a station re-created under an old id must not replay old ones).
    """
    key = point_key(state)  # a deferred state's base lags its base key: resume folds the rest
    doc = {"v": STATE_VERSION, "base": clone_snapshot(state["base"]), "base_key": key}
    if key is None and after_id is not None:
        doc["after_id"] = after_id
    return doc


def base_key(state: Mapping) -> list | None:
    """The key ``[ts_us, metric]`` of the newest sample folded into the base (None: none yet)."""
    return list(state["base_key"]) if state["base_key"] is not None else None


def resume(rules: Rules, point: Mapping, key: list | None, entries: Iterable[tuple[int, str, float]], *,
           expected_interval_s: float | None = None, kept: Mapping | None = None) -> dict:
    """Rebuild the whole state from a checkpoint, the base key reached since, and the stored samples.

    ``entries`` are ``(ts_us, metric, value)`` of every sample judged after the checkpoint
    (newer than its key); samples up to ``key`` go into the base, the rest form the horizon,
    and the current snapshot is the base with the horizon applied: the state ``judge``
    returned last, for the same rules. (A held doubtful sample the scheduled check judged as it
    is was recorded by a ``RELEASE`` entry, which no stored sample carries: until the station's
    next water level, a resumed state holds it back again; that next sample, being overdue,
    judges it as it is, so the outcome is the same.) ``kept``: the state's ``kept_of`` (water levels a
    replay judged because they had been judged in order, which measurement order alone would hold back).
    """
    base = clone_snapshot(point["base"])
    start = tuple(point["base_key"]) if point.get("base_key") is not None else None
    until = tuple(key) if key is not None else None
    horizon: list[list] = []
    keep = {int(ts): mark for ts, mark in (kept or {}).items()}
    run = Run(int(2 * (expected_interval_s or DEFAULT_EXPECTED_INTERVAL_S) * US), keep=keep)
    for ts, metric, value in sorted(entries, key=lambda e: (e[0], e[1])):
        if metric not in JUDGED_METRICS or (start is not None and (ts, metric) <= start):
            continue
        if until is not None and (ts, metric) <= until:
            apply_entry(base, rules, [ts, metric, float(value)], None, run)
        else:
            horizon.append([ts, metric, float(value)])
    current = clone_snapshot(base)
    marked = Run(run.overdue_us, {}, keep=keep)
    for entry in horizon:
        apply_entry(current, rules, entry, None, marked)
    held = base["quality"]["pend"]
    if held is not None:  # the base still holds a doubtful sample back: its mark is in the horizon's hands
        marked.marks.setdefault(held[0], qc.DOUBTFUL)
    marks = {str(ts): mark for ts, mark in marked.marks.items() if mark != qc.GOOD}
    state = {"v": STATE_VERSION, "base": base, "base_key": list(until) if until is not None else None,
             "current": current, "horizon": horizon, "quality_marks": marks}
    if kept:
        state["kept"] = dict(kept)
    return state
