"""The rainfall step: rolling sums of rain increments over each window, judged against its thresholds."""

from __future__ import annotations

from alerts.engine.machine import machine_step, slide, thresholds
from alerts.engine.model import RAIN_BUFFER_S, US
from alerts.engine.state import from_v1, is_full_state
from alerts.levels import WARNING_LEVELS
from alerts.rules import RAIN_WINDOWS, Rules


def rain_sums(buf: list, ts: int) -> dict[str, float]:
    """Rolling sums over (ts - window, ts] of a time-sorted rain buffer."""
    limits = sorted(RAIN_WINDOWS.items(), key=lambda item: item[1])
    sums = {name: 0.0 for name in RAIN_WINDOWS}
    total = 0.0
    index = 0
    for entry_ts, amount in reversed(buf):
        while index < len(limits) and entry_ts <= ts - limits[index][1] * US:
            sums[limits[index][0]] = total
            index += 1
        if index == len(limits):
            break
        total += amount
    for name, _seconds in limits[index:]:
        sums[name] = total
    return sums


def rainfall_step(snap: dict, rules: Rules, ts: int, value: float) -> dict[str, float]:
    """Judge one rain increment by the rolling sums it completes; return the sums."""
    machine = snap["kinds"]["rainfall"]
    buf = snap["rain"]
    slide(buf, ts, value, RAIN_BUFFER_S * US, False)
    sums = rain_sums(buf, ts)
    rule = rules.rainfall
    conds: list = []
    windows = [(sums[window.name], thresholds(window)) for window in rule.windows] if rule else []
    for index in range(len(WARNING_LEVELS)):
        pairs = [(total, limits[index]) for total, limits in windows if limits[index] is not None]
        if not pairs:
            conds.append(None)
            continue
        reached = any(total >= threshold for total, threshold in pairs)
        conds.append((reached, not reached))
    machine["level"] = machine_step(machine, ts, conds, 0, (rule.clear_hold_s if rule else 0) * US)
    return sums  # rounded only for a reading that is kept (see alerts.engine.steps)


def current_rain_sums(state: dict | None) -> dict[str, float] | None:
    """The rolling rainfall sums at the newest rain sample of a stored state (for reminders)."""
    if state and state.get("v") == 1:
        state = from_v1(state)
    if not is_full_state(state) or not state["current"]["rain"]:
        return None
    buf = state["current"]["rain"]
    return {name: round(total, 3) for name, total in rain_sums(buf, buf[-1][0]).items()}
