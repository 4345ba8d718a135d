"""A deferred base (``judge(..., defer_fold=True)``, alerts/engine/folding.py) judges exactly as the exact one."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts import engine
from alerts.engine import judge
from alerts.model import Sample
from alerts.rules import parse_rules

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
PROPS = settings(max_examples=int(os.environ.get("EWS_PROPERTY_EXAMPLES", "100")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
WATER = {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1, "hold_s": 0, "clear_hold_s": 600,
         "rise_rate": {"per_hour": 0.5, "level": "waspada"}}
RAIN = {"1h": {"waspada": 10, "siaga": 20, "awas": 40}, "24h": {"waspada": 50, "siaga": 100, "awas": 150},
        "clear_hold_s": 1800}
QUALITY = {"max_step_per_min": 0.05, "flatline_s": 7200, "flatline_tolerance": 0.002}
WITH_CHECK = parse_rules({"water_level": WATER, "rainfall": RAIN, "quality": QUALITY, "battery": {"low": 11.5}})
WITHOUT_CHECK = parse_rules({"water_level": WATER, "rainfall": RAIN, "battery": {"low": 11.5}})


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


# Up to 30 hours of samples, some minutes apart and some hours: samples leave the horizon,
# some arrive late inside it and some too late; water levels jump (held back as doubtful) and stay flat.
spread = st.tuples(
    st.dictionaries(st.integers(0, 1800), st.sampled_from([1.0, 1.0, 1.02, 1.5, 2.1, 2.6, 3.2]), max_size=90).map(
        lambda d: [Sample("ST", "water_level", at(m), v) for m, v in d.items()]),
    st.dictionaries(st.integers(0, 1800), st.floats(0.0, 9.0, allow_nan=False), max_size=40).map(
        lambda d: [Sample("ST", "rainfall", at(m), round(v, 3)) for m, v in d.items()]),
    st.dictionaries(st.integers(0, 1800), st.sampled_from([11.0, 12.5]), max_size=20).map(
        lambda d: [Sample("ST", "battery", at(m), v) for m, v in d.items()]),
).map(lambda parts: parts[0] + parts[1] + parts[2])


def batches_of(samples: list, cuts: list[int], order) -> list[list]:
    """Mostly in time order (as stations send), with some samples moved later; split at ``cuts``."""
    ordered = sorted(samples, key=lambda s: (s.ts, s.metric))
    for _ in range(len(ordered) // 8):
        i, j = sorted(order.sample(range(len(ordered)), 2)) if len(ordered) > 1 else (0, 0)
        ordered.insert(j, ordered.pop(i))
    edges = [0, *sorted({c % (len(ordered) + 1) for c in cuts}), len(ordered)]
    return [ordered[a:b] for a, b in zip(edges, edges[1:])]


def plain(value):
    return json.loads(json.dumps(value, default=str))


@PROPS
@given(samples=spread, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 300), max_size=60),
       checked=st.booleans(), scheduled=st.lists(st.booleans(), max_size=60))
def test_a_deferred_base_judges_as_the_exact_one_and_settles_to_it(samples, order, cuts, checked, scheduled):
    rules = WITH_CHECK if checked else WITHOUT_CHECK
    exact = deferred = None
    stored: list[tuple] = []
    for number, batch in enumerate(batches_of(samples, cuts, order)):
        now = batch[-1].ts + timedelta(hours=1) if batch and number < len(scheduled) and scheduled[number] else None
        one = judge(rules, exact, batch, now=now)
        other = judge(rules, deferred, batch, take_state=True, now=now, defer_fold=True)
        assert other.events == one.events
        assert (other.levels, other.ignored, other.quality, other.overdue_at) == \
               (one.levels, one.ignored, one.quality, one.overdue_at)
        exact, deferred = one.state, other.state
        assert engine.base_key(deferred) == engine.base_key(exact)
        assert plain(engine.settled(rules, deferred)) == plain(exact)
        # What a store keeps of the deferred state rebuilds the exact one (a scheduled release of a held
        # sample is no stored reading: resume holds it back again, see alerts.engine.checkpoints).
        stored += [(engine.micros(s.ts), s.metric, s.value) for s in batch]
        if not any(scheduled):
            rebuilt = engine.resume(rules, plain(engine.checkpoint(deferred)), engine.base_key(deferred), stored,
                                    kept=plain(engine.kept_of(deferred)))
            assert plain(rebuilt) == plain(exact)


def test_the_deferred_base_jumps_to_a_stop_instead_of_judging_each_sample_again():
    rules = WITHOUT_CHECK
    samples = [Sample("ST", "water_level", at(m), 1.0 + (m % 7) / 100) for m in range(0, 16 * 60)]
    state = None
    for start in range(0, len(samples), 100):
        state = judge(rules, state, samples[start:start + 100], take_state=True, defer_fold=True).state
    lag_us = engine.base_key(state)[0] - engine.point_key(state)[0]
    assert 0 <= lag_us <= (engine.STOP_S + 100 * 60) * 1_000_000
    assert engine.point_key(state) is not None and state["horizon"][0][0] > engine.point_key(state)[0]
    exact = judge(rules, None, samples).state
    assert plain(engine.settled(rules, state)) == plain(exact)


def test_a_deferred_state_cannot_be_forgotten_before_it_is_settled():
    rules = WITHOUT_CHECK
    state = judge(rules, None, [Sample("ST", "water_level", at(m), 2.6) for m in range(0, 500, 5)],
                  defer_fold=True).state
    try:
        engine.forget(state, "water_level")
    except ValueError:
        pass
    else:
        raise AssertionError("forget took a deferred state")
    assert engine.levels_of(engine.forget(engine.settled(rules, state), "water_level"))["water_level"].label == "normal"


def test_a_stop_between_two_samples_of_one_time_keeps_the_mark_of_the_water_level_after_it():
    """A stop taken at a battery reading does not forget the doubtful mark of the water level of the same minute."""
    batch = [Sample("ST", "water_level", at(122), 3.2), Sample("ST", "battery", at(164), 11.0),
             Sample("ST", "water_level", at(164), 1.0), Sample("ST", "water_level", at(528), 3.2)]
    exact = judge(WITH_CHECK, None, batch)
    deferred = judge(WITH_CHECK, None, batch, take_state=True, defer_fold=True)
    assert deferred.events == exact.events
    assert deferred.state["base_at"] == [engine.micros(at(164)), "battery"]  # the case: a stop inside the minute
    assert plain(engine.settled(WITH_CHECK, deferred.state)) == plain(exact.state)
    assert exact.state["quality_marks"] == {str(engine.micros(at(164))): "doubtful"}
