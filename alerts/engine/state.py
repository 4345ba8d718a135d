"""A station's engine state: its two snapshots and the horizon between them; loading, migrating, forgetting.

A *snapshot* is everything the judgement of the next sample needs: per kind the level, the
hold and clear timers of each threshold, the reading that caused the level; the last hour of
water levels (rise rate) and the last 24 h of rain increments (rolling sums); the quality
check's memory. A state keeps ``base`` and ``current`` and the samples in between (``horizon``).
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts import quality as qc
from alerts.engine.model import ENGINE_KINDS, STATE_VERSION
from alerts.levels import Level


def new_machine() -> dict:
    """One kind's level machine at normal, no timer running."""
    # above_since[i] / below_since[i]: since when (us) the value has been continuously at or
    # above the entry line / below the clear line of WARNING_LEVELS[i]; None when it is not.
    # threshold_level: the level from thresholds alone; level: the kind's level (with the rise rate).
    return {"level": 0, "threshold_level": 0, "above_since": [None, None, None],
            "below_since": [None, None, None], "cause": None}


def new_snapshot() -> dict:
    """The snapshot of a station before its first sample."""
    machines = {kind: new_machine() for kind in ENGINE_KINDS}
    machines["water_level"]["rise"] = {"on": False, "below_since": None}
    return {"kinds": machines, "water_levels": [], "rain": [], "last": None, "quality": qc.new_quality()}


def clone_machine(machine: dict) -> dict:
    """A private copy of one kind's level machine."""
    copy = {"level": machine["level"], "threshold_level": machine["threshold_level"],
            "above_since": list(machine["above_since"]), "below_since": list(machine["below_since"]),
            "cause": machine["cause"]}
    if "rise" in machine:
        copy["rise"] = dict(machine["rise"])
    if machine.get("forgotten_until") is not None:
        copy["forgotten_until"] = machine["forgotten_until"]
    return copy


def clone_snapshot(snap: dict) -> dict:
    """A private copy of a snapshot."""
    # States stored before the quality check have no sensor machine and no ``quality``: they start fresh.
    machines = {kind: clone_machine(snap["kinds"][kind]) if kind in snap["kinds"] else new_machine()
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
    return {"v": STATE_VERSION, "base": new_snapshot(), "base_key": None, "current": new_snapshot(), "horizon": [],
            "quality_marks": {}}


def load_state(state: Mapping | None) -> dict:
    """A private, current-version copy of a whole stored state (version 1 is migrated); new if None.

    The caller's dict is never changed.
    """
    if state and state.get("v") == 1:
        state = from_v1(state)
    if not is_full_state(state):
        return new_state()
    copy = {
        "v": STATE_VERSION,
        "base": clone_snapshot(state["base"]),
        "base_key": list(state["base_key"]) if state.get("base_key") is not None else None,
        "current": clone_snapshot(state["current"]),
        "horizon": [list(e) for e in state["horizon"]],
        "quality_marks": dict(state.get("quality_marks") or {}),
    }
    if state.get("kept"):
        copy["kept"] = dict(state["kept"])
    if "base_at" in state:  # a deferred state (alerts.engine.folding): its base lags; judge settles it
        copy["base_at"] = list(state["base_at"]) if state["base_at"] is not None else None
        copy["stops"] = []
    return copy


def kept_decisions(state: Mapping) -> dict[int, str]:
    """The water levels (ts in us -> mark) a replay judged because they had been judged before (see ``kept_of``)."""
    return {int(ts): mark for ts, mark in (state.get("kept") or {}).items()}


def kept_of(state: Mapping) -> dict | None:
    """What a store keeps beside its checkpoint so that ``resume`` decides these water levels the same; None: none."""
    return dict(state["kept"]) if state.get("kept") else None


def is_full_state(state: Mapping | None) -> bool:
    """True for a whole state of this version (both snapshots and the horizon), as ``judge`` returns it."""
    return bool(state) and state.get("v") == STATE_VERSION and "current" in state


_ALL_KINDS = frozenset(ENGINE_KINDS)


def upgrade(st: dict) -> None:
    """Give a state made before the quality check what it lacks (in place): its levels carry on."""
    st.setdefault("quality_marks", {})
    for snap in (st["base"], st["current"]):
        if "quality" not in snap:
            snap["quality"] = qc.new_quality()
        if snap["kinds"].keys() >= _ALL_KINDS:
            continue  # the common case: nothing to add
        for kind in ENGINE_KINDS:
            if kind not in snap["kinds"]:
                snap["kinds"][kind] = new_machine()


# Version 1 (first release) used short keys; the loader renames them, so stored states keep working.
_V1_MACHINE = {"tl": "threshold_level", "up": "above_since", "down": "below_since"}


def from_v1(state: Mapping) -> dict:
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


_LEVEL_OF = {int(level): level for level in Level}


def levels_of(state: Mapping) -> dict[str, Level]:
    """The level of each kind in a whole state."""
    return {kind: _level(state["current"]["kinds"][kind]["level"]) for kind in ENGINE_KINDS}


def _level(value: int) -> Level:
    """The Level of a stored level: a dict look-up, cheaper than calling the enum (which says what is wrong)."""
    level = _LEVEL_OF.get(value)
    return Level(value) if level is None else level


def forget(state: Mapping | None, kind: str) -> dict:
    """``state`` with ``kind`` back at normal and its samples so far ignored: the next one is judged afresh.

    For an alert closed by hand (spec section 10). The mark (``forgotten_until``, the newest
    sample time judged) stays in both snapshots, so a replay of stored samples (a late sample,
    or ``resume`` after a restart) does not bring the old level back.
    """
    if state and "base_at" in state:
        raise ValueError("a deferred state is judged by its holder only: settle it first")
    st = load_state(state)
    last = st["current"]["last"]
    until = last[0] if last is not None else None
    for snap in (st["base"], st["current"]):
        fresh = new_machine()
        if "rise" in snap["kinds"][kind]:
            fresh["rise"] = {"on": False, "below_since": None}
        fresh["forgotten_until"] = until
        snap["kinds"][kind] = fresh
    return st
