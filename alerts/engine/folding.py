"""Samples leaving the horizon: folded into the base one by one, or the base jumping to a stop.

``judge`` keeps the base exact: each sample older than the horizon is applied to it once more,
so a whole state can be stored, compared and passed around as it is. That second judgement of
every sample is a third of the judging. A caller that holds its states in memory (ingest,
``service/station_states.py``) lets the base lag instead (``judge(..., defer_fold=True)``): on
the way, every ``STOP_S`` of measurement time, the engine keeps a copy of the current snapshot
(a *stop*: it is exactly the base after the samples up to it), and the base jumps to the newest
stop the horizon has left behind. Such a *deferred* state says where its base stands
(``base_at``), keeps the samples after that in its horizon (``base_key`` still says which of
them the exact base holds), and judges exactly as the exact state would. ``settle`` makes it
exact; its checkpoint is a checkpoint of the base it has (``resume`` folds the rest).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import itemgetter

from alerts import quality as qc
from alerts.engine.model import HORIZON_S, US
from alerts.engine.state import clone_machine, kept_decisions
from alerts.engine.steps import Run, apply_entry
from alerts.rules import Rules

STOP_S = 1800  # measurement time between stops: the deferred base lags the exact one by about this
_STOP_US, _HORIZON_US = STOP_S * US, HORIZON_S * US
_TS, _ENTRY_KEY = itemgetter(0), itemgetter(0, 1)  # an entry's time; its key (time, metric)


def fold(st: dict, rules: Rules, overdue_us: int, marks: dict[int, str]) -> None:
    """Fold samples older than the horizon into the base snapshot (each exactly once)."""
    horizon = st["horizon"]
    if not horizon:
        return
    cutoff = horizon[-1][0] - _HORIZON_US
    count = 0
    run = Run(overdue_us, keep=kept_decisions(st))  # the base decides as the current snapshot did
    while count < len(horizon) and horizon[count][0] < cutoff:
        apply_entry(st["base"], rules, horizon[count], None, run)
        count += 1
    if count:
        st["base_key"] = [horizon[count - 1][0], horizon[count - 1][1]]
        del horizon[:count]
        _forget_marks(st, marks, st["base_key"])


def _forget_marks(st: dict, marks: dict[int, str], until: list) -> None:
    """A folded sample's mark can no longer change, unless the base still holds it back.

    ``until`` is the last entry in the base, by (time, metric): a stop can fall between two samples of the
    same time (a battery reading before a water level), and the water level after it is not in the base yet.
    """
    held = st["base"]["quality"]["pend"][0] if st["base"]["quality"]["pend"] is not None else None
    last = (until[0], until[1])
    for ts in [ts for ts in marks if (ts, "water_level") <= last and ts != held]:  # marks are water levels'
        del marks[ts]


def defer(st: dict) -> list:
    """Make ``st`` a deferred state (if it is not one yet); return its stops."""
    if "base_at" not in st:
        st["base_at"] = list(st["base_key"]) if st["base_key"] is not None else None
        st["stops"] = []
    return st["stops"]


def apply_in_order(st: dict, rules: Rules, entries: list[list], events: list, run: Run) -> None:
    """Apply in-order ``entries`` to the current snapshot of a deferred state, keeping a stop every ``STOP_S``."""
    cur, stops = st["current"], defer(st)
    last_stop = stops[-1][0][0] if stops else (st["base_at"][0] if st["base_at"] is not None else None)
    next_stop = last_stop + _STOP_US if last_stop is not None else None  # an entry at or after it makes a stop
    for entry in entries:
        apply_entry(cur, rules, entry, events, run)
        if next_stop is None or entry[0] >= next_stop:
            stops.append(([entry[0], entry[1]], _stop_copy(cur)))
            next_stop = entry[0] + _STOP_US


def _stop_copy(snap: dict) -> dict:
    """A copy of a snapshot to become a base later (the windows' entries are never changed in place)."""
    return {"kinds": {kind: clone_machine(machine) for kind, machine in snap["kinds"].items()},
            "water_levels": list(snap["water_levels"]), "rain": list(snap["rain"]),
            "last": list(snap["last"]), "quality": qc.clone(snap["quality"])}


def jump(st: dict, marks: dict[int, str]) -> None:
    """Advance a deferred state's base key past the horizon, and its base to the newest stop behind it."""
    horizon = st["horizon"]
    if not horizon:
        return
    count = bisect_left(horizon, horizon[-1][0] - _HORIZON_US, key=_TS)  # the samples older than the horizon
    if count:
        st["base_key"] = [horizon[count - 1][0], horizon[count - 1][1]]
    if st["base_key"] is None:
        return
    key, stops = tuple(st["base_key"]), st["stops"]
    passed = 0
    while passed < len(stops) and tuple(stops[passed][0]) <= key:
        passed += 1
    if not passed:
        return
    at, snap = stops[passed - 1]
    del stops[:passed]
    st["base"], st["base_at"] = snap, at
    del horizon[:bisect_right(horizon, tuple(at), key=_ENTRY_KEY)]
    _forget_marks(st, marks, at)


def forget_stops_from(st: dict, key: list) -> None:
    """Drop the stops at or after ``key`` (a late sample changed what came after it)."""
    stops = st.get("stops")
    if stops:
        stops[:] = [stop for stop in stops if tuple(stop[0]) < tuple(key)]


def settle(st: dict, rules: Rules, overdue_us: int, marks: dict[int, str]) -> None:
    """Make a deferred state exact (in place): the base folds the samples it lags behind; no stops."""
    if "base_at" not in st:
        return
    horizon, key = st["horizon"], st["base_key"]
    if key is not None:
        count = bisect_right(horizon, tuple(key), key=_ENTRY_KEY)
        run = Run(overdue_us, keep=kept_decisions(st))
        for entry in horizon[:count]:
            apply_entry(st["base"], rules, entry, None, run)
        del horizon[:count]
        _forget_marks(st, marks, key)
    del st["base_at"], st["stops"]


def point_key(st: dict) -> list | None:
    """The key of the newest sample in the base a state has (a deferred base lags its ``base_key``)."""
    key = st["base_at"] if "base_at" in st else st["base_key"]
    return list(key) if key is not None else None
