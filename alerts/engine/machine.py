"""What every step shares: a kind's threshold timers, a rule's thresholds, a sliding window of samples."""

from __future__ import annotations

from alerts.engine.model import US
from alerts.levels import WARNING_LEVELS


def machine_step(machine: dict, ts: int, conds: list, hold_s: float, clear_hold_s: float) -> int:
    """Advance one kind's threshold timers to ``ts`` and return its threshold level.

    ``conds[i]`` is None when WARNING_LEVELS[i] is not used, else ``(at_or_above_entry,
    below_clear_line)``. A level is entered once its entry condition has held for
    ``hold_s``; a level is kept until its clear condition has held for ``clear_hold_s``.
    """
    up, down = machine["above_since"], machine["below_since"]
    hold, clear = hold_s * US, clear_hold_s * US
    entered = 0
    for i, cond in enumerate(conds):  # one pass: the timers, and the highest level entered
        if cond is None:
            up[i] = down[i] = None
            continue
        if cond[0]:
            if up[i] is None:
                up[i] = ts
            if ts - up[i] >= hold:
                entered = i + 1
        else:
            up[i] = None
        if cond[1]:
            if down[i] is None:
                down[i] = ts
        else:
            down[i] = None
    kept = 0
    for i in range(machine["threshold_level"]):
        if conds[i] is None:
            continue
        if down[i] is not None and ts - down[i] >= clear:
            continue
        kept = i + 1
    level = machine["threshold_level"] = entered if entered > kept else kept
    return level


_THRESHOLDS: dict[int, tuple] = {}  # id(rule) -> (rule, its thresholds by WARNING_LEVELS)


def thresholds(rule) -> tuple:
    """A rule's entry values for WARNING_LEVELS (None: level not used), looked up once per rule object."""
    if rule is None:
        return (None,) * len(WARNING_LEVELS)
    known = _THRESHOLDS.get(id(rule))
    if known is None or known[0] is not rule:  # an id can be reused once a rule object is gone
        if len(_THRESHOLDS) > 1024:
            _THRESHOLDS.clear()
        known = _THRESHOLDS[id(rule)] = (rule, tuple(rule.threshold(level) for level in WARNING_LEVELS))
    return known[1]


def slide(buf: list, ts: int, value: float, span_us: int, keep_edge: bool) -> None:
    """Append ``[ts, value]`` to a time-sorted window and drop the entries older than ``span_us`` before it.

    ``keep_edge``: an entry exactly ``span_us`` old stays (the rise rate's hour-old reference);
    otherwise the window is ``(ts - span, ts]`` (the rolling rain sums).
    """
    buf.append([ts, value])
    oldest = ts - span_us
    drop = 0
    while buf[drop][0] < oldest or (not keep_edge and buf[drop][0] == oldest):
        drop += 1
    if drop:
        del buf[:drop]
