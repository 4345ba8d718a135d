"""What every step shares: a kind's threshold timers, a rule's thresholds, a sliding window of samples."""

from __future__ import annotations

from collections.abc import Callable

from alerts.levels import WARNING_LEVELS


def machine_step(machine: dict, ts: int, conds: list, hold: float, clear: float) -> int:
    """Advance one kind's threshold timers to ``ts`` and return its threshold level.

    ``conds[i]`` is None when WARNING_LEVELS[i] is not used, else ``(at_or_above_entry,
    below_clear_line)``. A level is entered once its entry condition has held for
    ``hold`` (us); a level is kept until its clear condition has held for ``clear`` (us).
    """
    up, down = machine["above_since"], machine["below_since"]
    entered = 0
    for i, cond in enumerate(conds):  # one pass: the timers, and the highest level entered
        if cond is None:
            up[i] = down[i] = None
            continue
        at_or_above, below = cond
        if at_or_above:
            since = up[i]
            if since is None:
                up[i] = since = ts
            if ts - since >= hold:
                entered = i + 1
        else:
            up[i] = None
        if not below:
            down[i] = None
        elif down[i] is None:
            down[i] = ts
    kept = 0
    for i in range(machine["threshold_level"]):
        if conds[i] is None:
            continue
        if down[i] is not None and ts - down[i] >= clear:
            continue
        kept = i + 1
    level = machine["threshold_level"] = entered if entered > kept else kept
    return level


_NO_TIMERS = (None,) * len(WARNING_LEVELS)


def calm_step(machine: dict, ts: int, conds: tuple) -> int:
    """``machine_step`` from threshold level 0 with conditions that enter no level and clear every one.

    ``conds[i]`` is None or ``(False, True)``: no entry timer runs, a clear timer starts where none
    runs, and the level stays 0. The same outcome with less work: most samples are calm.
    """
    machine["above_since"][:] = _NO_TIMERS
    down = machine["below_since"]
    for i, cond in enumerate(conds):
        if cond is None:
            down[i] = None
        elif down[i] is None:
            down[i] = ts
    return 0


def once_per_rule(derive: Callable) -> Callable:
    """``derive(rule)``, worked out once per rule object (rules are frozen; a station's are parsed once per refresh)."""
    known: dict[int, tuple] = {}  # id(rule) -> (rule, what was derived from it)
    # The rule asked for last time, and what was derived (one tuple: threads may share it): a batch
    # asks for one station's rule again and again.
    last = [(None, derive(None))]

    def derived(rule):
        recent = last[0]
        if recent[0] is rule:
            return recent[1]
        hit = known.get(id(rule))
        if hit is None or hit[0] is not rule:  # an id can be reused once a rule object is gone
            if len(known) > 1024:
                known.clear()
            hit = known[id(rule)] = (rule, derive(rule))
        last[0] = hit
        return hit[1]

    derived.__doc__ = derive.__doc__
    return derived


@once_per_rule
def thresholds(rule) -> tuple:
    """A rule's entry values for WARNING_LEVELS (None: level not used)."""
    if rule is None:
        return (None,) * len(WARNING_LEVELS)
    return tuple(rule.threshold(level) for level in WARNING_LEVELS)


def slide(buf: list, ts: int, value: float, span_us: int, keep_edge: bool) -> None:
    """Append ``[ts, value]`` to a time-sorted window and drop the entries older than ``span_us`` before it.

    ``keep_edge``: an entry exactly ``span_us`` old stays (the rise rate's hour-old reference);
    otherwise the window is ``(ts - span, ts]`` (the rolling rain sums).
    """
    buf.append([ts, value])
    oldest = ts - span_us
    drop = 0  # a walk from the oldest: a sample or two leave at a time
    if keep_edge:
        while buf[drop][0] < oldest:
            drop += 1
    else:
        while buf[drop][0] <= oldest:
            drop += 1
    if drop:
        del buf[:drop]
