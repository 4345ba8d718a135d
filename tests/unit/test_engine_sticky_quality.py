"""A quality decision made in order is kept by replays (spec section 17, docs/rules.md, Data quality).

From a real run (``ews bench latency --backlog 100000``, BENCH-001): a live water level accepted in
order (its step from the previous accepted sample is within the limit) raised WASPADA; then the
gateway's backlog filled the minutes before it. Replayed after those, the same sample looked like a
jump, was held back as doubtful, and the replay told residents the river was back to normal while
it stood at 1.96 m and rising. A doubt found after the fact must not order an all-clear.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts import engine
from alerts.engine import judge
from alerts.levels import Level
from alerts.model import Sample
from alerts.rules import parse_rules
from alerts.station_rules import rules_from_overrides

T0 = datetime(2026, 12, 2, 0, 0, 9, tzinfo=timezone.utc)
LIVE = datetime(2026, 12, 2, 0, 39, 32, 381894, tzinfo=timezone.utc)


def defaults():
    from service.station_rules import default_rules_doc  # the defaults as a station stores them (a JSON file)

    return parse_rules(rules_from_overrides(default_rules_doc(), None))


def minutes(first: int, values) -> list[Sample]:
    return [Sample("BENCH-001", "water_level", T0 + timedelta(minutes=first + i), v) for i, v in enumerate(values)]


EARLIER = minutes(-60, [0.33] * 75)  # 23:00 .. 00:14, stored before the live sample
LATE_1 = minutes(15, [0.329, 0.318, 0.329, 0.331, 0.332, 0.324, 0.322, 0.311, 0.317, 0.298, 0.281])  # 00:15 .. 00:25
LATE_2 = minutes(26, [0.27, 0.287, 0.273, 0.285, 0.266, 0.279, 0.266, 0.251])  # 00:26 .. 00:33
RISING = [1.96, 1.95, 1.955, 2.03, 2.08, 2.12, 2.175, 2.23, 2.27, 2.325, 2.38, 2.42, 2.455, 2.53]  # as in the run


def live(at: datetime, value: float) -> list[Sample]:
    return [Sample("BENCH-001", "water_level", at, value)]


def trace(j) -> list[tuple[str, str, Level]]:
    return [(e.kind, e.type, e.level) for e in j.events]


def test_a_live_level_accepted_in_order_is_not_cleared_by_an_older_backlog():
    rules = defaults()
    j = judge(rules, None, EARLIER)
    j = judge(rules, j.state, live(LIVE, 1.96))
    assert trace(j) == [("water_level", "raised", Level.WASPADA)]  # by the rise rate: residents are warned
    for late in (LATE_1, LATE_2):
        j = judge(rules, j.state, late)
        assert trace(j) == []  # neither a cleared water level nor a doubtful notice about the told level
        assert j.levels["water_level"] is Level.WASPADA
        assert j.quality == {}  # the accepted 1.96 m stays accepted (no doubtful mark after the fact)
    events = []
    for i, value in enumerate(RISING):
        j = judge(rules, j.state, live(LIVE + timedelta(seconds=1.1 + 0.1 * i), value))
        events += trace(j)
    assert ("water_level", "cleared", Level.NORMAL) not in events
    assert events == [("water_level", "escalated", Level.SIAGA)]
    assert j.levels["water_level"] is Level.SIAGA


def test_a_kept_decision_is_rebuilt_by_resume_and_by_the_deferred_fold():
    rules = defaults()
    exact = judge(rules, None, EARLIER)
    deferred = judge(rules, None, EARLIER, defer_fold=True)
    point = engine.checkpoint(exact.state)
    stored = [(engine.micros(s.ts), s.metric, s.value) for s in EARLIER]
    for batch in (live(LIVE, 1.96), LATE_1, LATE_2, live(LIVE + timedelta(seconds=1.1), 1.96)):
        exact = judge(rules, exact.state, batch)
        deferred = judge(rules, deferred.state, batch, defer_fold=True)
        stored += [(engine.micros(s.ts), s.metric, s.value) for s in batch]
        resumed = engine.resume(rules, point, engine.base_key(exact.state), stored,
                                kept=engine.kept_of(exact.state))
        assert resumed == exact.state
        assert engine.settled(rules, deferred.state) == exact.state
        assert exact.levels["water_level"] is Level.WASPADA


def test_a_doubtful_level_judged_as_it_is_is_not_made_a_spike_by_a_late_sample():
    # A jump held back, then judged as it is when the station fell silent (a late warning beats none): a
    # backlog sample after it that would have refuted it in time does not take the warning back either.
    rules = defaults()
    steady = [Sample("ST", "water_level", T0 + timedelta(minutes=m), 1.0) for m in range(-60, 0)]
    jump, late = Sample("ST", "water_level", T0, 2.3), Sample("ST", "water_level", T0 + timedelta(seconds=30), 1.02)
    j = judge(rules, None, steady, expected_interval_s=60)
    j = judge(rules, j.state, [jump], expected_interval_s=60)
    assert trace(j) == [("sensor", "raised", Level.WASPADA)] and j.quality == {jump.ts: "doubtful"}
    j = judge(rules, j.state, [], expected_interval_s=60, now=T0 + timedelta(minutes=3))
    assert ("water_level", "raised", Level.WASPADA) in trace(j)  # judged as it is: residents are warned
    j = judge(rules, j.state, [late], expected_interval_s=60)
    assert [e for e in trace(j) if e[0] == "water_level"] == []
    assert j.levels["water_level"] is Level.WASPADA and j.quality.get(jump.ts) != "spike"
