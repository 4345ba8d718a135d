"""Data quality before judgment (spec section 17): spike confirmation and stuck sensors. Pure.

The engine keeps, per snapshot, a small quality state ``q`` (JSON-serialisable):

* ``acc``: ``[ts, value]`` of the last *accepted* water level (judged, or about to be);
* ``pend``: ``[ts, value, would]`` of the doubtful sample held back from judgment, or None
  (``would``: the water-level level it would give, filled in by the engine);
* ``flat``: ``[since, low, high]``: since when (us) the accepted levels have stayed within
  the band ``[low, high]`` (at most ``flatline_tolerance`` wide), or None.

``admit`` decides what one water level in measurement order does: judged now, held back
as doubtful, or (with a held one) confirms or refutes it. ``release`` judges a held sample
whose station fell silent. Both return an ``Admission``; the engine judges its samples in
order and stores its marks (``good``, ``doubtful``, ``spike``) on the readings.
"""

from __future__ import annotations

import dataclasses

from alerts.rules import QualityRule

_US = 1_000_000
_MIN_US = 60 * _US

GOOD, DOUBTFUL, SPIKE = "good", "doubtful", "spike"
QUALITIES = (GOOD, DOUBTFUL, SPIKE)


@dataclasses.dataclass
class Admission:
    """What one step of the check decided: samples to judge now (in order), marks, a new hold."""

    judge: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    marks: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    held: bool = False  # the sample was held back as doubtful
    kept: bool = False  # the sample would have been held back, but an earlier decision accepted it (``keep``)
    ended: str | None = None  # what became of the sample held before: good, spike or doubtful (judged as it is)


def new_quality() -> dict:
    """The quality state of a station never seen."""
    return {"acc": None, "pend": None, "flat": None, "stuck": False}


def clone(q: dict | None) -> dict:
    """A private copy (older stored states have none: a fresh one)."""
    if not q:
        return new_quality()
    copy = {key: (list(q.get(key)) if q.get(key) is not None else None) for key in ("acc", "pend", "flat")}
    copy["stuck"] = bool(q.get("stuck"))
    return copy


def within_step(rule: QualityRule, earlier: list, ts: int, value: float) -> bool:
    """True when ``value`` at ``ts`` is within the allowed step of ``earlier`` (``[ts, value]``); any step is,
    with the check off (``max_step_per_min: null``)."""
    if rule.max_step_per_min is None:
        return True
    minutes = abs(ts - earlier[0]) / _MIN_US
    if minutes < 1.0:
        minutes = 1.0
    # A hair of slack so that a step of exactly the limit (0.1 m in a minute) is not doubtful.
    return abs(value - earlier[1]) <= rule.max_step_per_min * minutes + 1e-9


def admits_at_once(q: dict, rule: QualityRule, ts: int, value: float) -> bool:
    """The common case of ``admit``: nothing held and within the step, so judged now, marking nothing.

    True: ``q`` is updated as ``admit`` would; False: ``q`` is untouched, ``admit`` decides.
    """
    if q["pend"] is not None:
        return False
    acc = q["acc"]
    if acc is None or within_step(rule, acc, ts, value):
        q["acc"] = [ts, value]
        return True
    return False


PLAIN = Admission()  # what ``admits_at_once`` decided, for a reader that asks (never changed)


def admit(q: dict, rule: QualityRule, ts: int, value: float, overdue_us: int, keep: str | None = None) -> Admission:
    """Decide one water level in measurement order; update ``q``.

    ``keep`` (a replay): the mark of a sample judged before (good, or doubtful judged as it is). It is
    judged again whatever the step: what residents were told is not retracted by a later doubt.
    """
    out = Admission()
    pend = q["pend"]
    if pend is not None and ts - pend[0] > overdue_us:
        _release_into(q, out)  # no next sample in time: the held one was judged as it is
        pend = None
    if pend is not None:
        if within_step(rule, pend, ts, value):
            out.ended = GOOD  # the river did jump: both are judged, in measurement order
            out.judge.append((pend[0], pend[1]))
            out.marks.append((pend[0], GOOD))
        elif q["acc"] is not None and within_step(rule, q["acc"], ts, value):
            out.ended = SPIKE  # back where it was: the held one was a spike, never judged
            out.marks.append((pend[0], SPIKE))
        else:
            # Neither: the held one is judged as it is, and this one is checked against it.
            _release_into(q, out)
            pend = None
        if pend is not None:
            q["pend"] = None
            out.judge.append((ts, value))
            q["acc"] = [ts, value]
            return out
    if q["acc"] is None or within_step(rule, q["acc"], ts, value):
        out.judge.append((ts, value))
        q["acc"] = [ts, value]
        return out
    if keep is not None:
        out.judge.append((ts, value))
        out.kept = True
        if keep != GOOD:
            out.marks.append((ts, keep))
        q["acc"] = [ts, value]
        return out
    q["pend"] = [ts, value, None]
    out.held = True
    out.marks.append((ts, DOUBTFUL))
    return out


def release(q: dict, at: int, overdue_us: int) -> Admission:
    """At ``at`` (us), judge a held sample with no next sample for more than ``overdue_us``."""
    out = Admission()
    if q["pend"] is not None and at - q["pend"][0] >= overdue_us:
        _release_into(q, out)
    return out


def _release_into(q: dict, out: Admission) -> None:
    pend = q["pend"]
    out.judge.append((pend[0], pend[1]))
    out.ended = DOUBTFUL  # judged, but never confirmed: the reading stays marked doubtful
    q["acc"] = [pend[0], pend[1]]
    q["pend"] = None


def overdue_at(q: dict | None, overdue_us: int) -> int | None:
    """When (us) the held sample of ``q`` is judged as it is if no next sample comes; None when none is held."""
    if not q or q.get("pend") is None:
        return None
    return q["pend"][0] + overdue_us


def track_flatline(q: dict, rule: QualityRule, ts: int, value: float) -> bool:
    """Add one judged water level to the flatline band; True when the sensor now looks stuck."""
    if rule.flatline_s is None:
        q["flat"], q["stuck"] = None, False
        return False
    flat = q["flat"]
    if flat is not None:
        low, high = flat[1], flat[2]
        if value < low:
            low = value
        elif value > high:  # (a band's low is never above its high)
            high = value
    if flat is None or high - low > rule.flatline_tolerance + 1e-9:
        q["flat"] = flat = [ts, value, value]  # the value moved: a new band starts here
    else:
        flat[1], flat[2] = low, high
    q["stuck"] = ts - flat[0] >= rule.flatline_s * _US
    return q["stuck"]


def stuck_for_s(q: dict, ts: int) -> int:
    """How long (s) the level has stayed in its band at ``ts``."""
    return 0 if q.get("flat") is None else int((ts - q["flat"][0]) // _US)
