"""The water-level step: thresholds with hold and clear timers, and the rise rate over the last hour."""

from __future__ import annotations

from alerts.engine.machine import machine_step, slide, thresholds
from alerts.engine.model import RISE_MIN_SPAN_S, RISE_WINDOW_S, US
from alerts.rules import Rules

_WINDOW_US, _MIN_SPAN_US, _HOUR_US = RISE_WINDOW_S * US, RISE_MIN_SPAN_S * US, 3600 * US


def water_level_step(snap: dict, rules: Rules, ts: int, value: float) -> dict | None:
    """Judge one water level; return what its reading adds (the rise rate, when known)."""
    machine = snap["kinds"]["water_level"]
    buf = snap["water_levels"]
    slide(buf, ts, value, _WINDOW_US, True)
    rate = None
    ref_ts, ref_value = buf[0]
    if ts - ref_ts >= _MIN_SPAN_US:
        rate = (value - ref_value) / ((ts - ref_ts) / _HOUR_US)
    rule = rules.water_level
    conds = [None if threshold is None else (value >= threshold, value < threshold - rule.clear_margin)
             for threshold in thresholds(rule)]
    tl = machine_step(machine, ts, conds, rule.hold_s if rule else 0, rule.clear_hold_s if rule else 0)
    rise = machine["rise"]
    if rule is None or rule.rise_rate is None:
        rise["on"], rise["below_since"] = False, None
    elif rate is not None:
        if rate >= rule.rise_rate.per_hour:
            rise["on"], rise["below_since"] = True, None
        elif rise["on"]:
            rise["below_since"] = rise["below_since"] if rise["below_since"] is not None else ts
            if ts - rise["below_since"] >= rule.clear_hold_s * US:
                rise["on"], rise["below_since"] = False, None
    floor = int(rule.rise_rate.level) if rise["on"] and rule and rule.rise_rate else 0
    machine["level"] = max(tl, floor)
    return None if rate is None else {"rate_per_hour": round(rate, 4)}
