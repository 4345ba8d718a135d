"""The water-level step: thresholds with hold and clear timers, and the rise rate over the last hour."""

from __future__ import annotations

import math
from typing import NamedTuple

from alerts.engine.machine import calm_step, machine_step, once_per_rule, slide, thresholds
from alerts.engine.model import RISE_MIN_SPAN_S, RISE_WINDOW_S, US
from alerts.rules import Rules, WaterLevelRule

_WINDOW_US, _MIN_SPAN_US, _HOUR_US = RISE_WINDOW_S * US, RISE_MIN_SPAN_S * US, 3600 * US


class WaterPlan(NamedTuple):
    """What judging a water level needs of its rule, in the engine's units."""

    lines: tuple  # per WARNING_LEVELS: None (level not used) or (entry value, clear line)
    calm_below: float  # a value below this is under every entry and clear line: ``calm`` are its conditions
    calm: tuple
    hold_us: float
    clear_hold_us: float
    rise_per_hour: float | None  # None: no rise-rate rule
    rise_level: int


@once_per_rule
def water_plan(rule: WaterLevelRule | None) -> WaterPlan:
    """A water-level rule as the step uses it, worked out once per rule."""
    if rule is None:
        return WaterPlan(thresholds(None), math.inf, thresholds(None), 0, 0, None, 0)
    lines = tuple(None if entry is None else (entry, entry - rule.clear_margin) for entry in thresholds(rule))
    calm_below = min((min(line) for line in lines if line is not None), default=math.inf)
    calm = tuple(None if line is None else (False, True) for line in lines)
    rise = rule.rise_rate
    return WaterPlan(lines, calm_below, calm, rule.hold_s * US, rule.clear_hold_s * US,
                     rise.per_hour if rise is not None else None, int(rise.level) if rise is not None else 0)


def water_level_step(snap: dict, rules: Rules, ts: int, value: float) -> float | None:
    """Judge one water level; return its rise rate (m/h) when known."""
    plan = water_plan(rules.water_level)
    machine = snap["kinds"]["water_level"]
    buf = snap["water_levels"]
    slide(buf, ts, value, _WINDOW_US, True)
    ref_ts, ref_value = buf[0]
    rate = (value - ref_value) / ((ts - ref_ts) / _HOUR_US) if ts - ref_ts >= _MIN_SPAN_US else None
    calm = value < plan.calm_below
    if calm and not machine["threshold_level"]:
        level = calm_step(machine, ts, plan.calm)  # most water levels: under every line, at normal
    else:
        conds = plan.calm if calm else [None if line is None else (value >= line[0], value < line[1])
                                        for line in plan.lines]
        level = machine_step(machine, ts, conds, plan.hold_us, plan.clear_hold_us)
    if _rising(machine["rise"], plan, ts, rate) and level < plan.rise_level:
        level = plan.rise_level
    machine["level"] = level
    return rate


def _rising(rise: dict, plan: WaterPlan, ts: int, rate: float | None) -> bool:
    """Advance the rise-rate timer to ``ts``; True while the river rises too fast (or has not slowed long enough)."""
    if plan.rise_per_hour is None:
        rise["on"], rise["below_since"] = False, None
    elif rate is not None:
        if rate >= plan.rise_per_hour:
            rise["on"], rise["below_since"] = True, None
        elif rise["on"]:
            rise["below_since"] = rise["below_since"] if rise["below_since"] is not None else ts
            if ts - rise["below_since"] >= plan.clear_hold_us:
                rise["on"], rise["below_since"] = False, None
    return rise["on"]
