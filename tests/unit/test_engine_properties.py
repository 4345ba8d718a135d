"""Properties of the rules engine: no flapping, ordered escalation, order independence, restarts."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts import engine
from alerts.engine import judge
from alerts.levels import Level
from alerts.model import Sample
from alerts.rules import parse_rules

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
# EWS_PROPERTY_EXAMPLES=2000 for a deeper run; the default keeps the suite fast.
PROPS = settings(max_examples=int(os.environ.get("EWS_PROPERTY_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

RULES = parse_rules({
    "water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1, "hold_s": 0,
                    "clear_hold_s": 600, "rise_rate": {"per_hour": 0.5, "level": "waspada"}},
    "rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                 "3h": {"waspada": 30, "siaga": 50, "awas": 80},
                 "24h": {"waspada": 50, "siaga": 100, "awas": 150}, "clear_hold_s": 1800},
    "battery": {"low": 11.5, "clear_margin": 0.3},
})


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def metric_samples(metric: str, low: float, high: float, span_min: int = 290):
    """Samples of one metric at distinct minutes within ``span_min`` (inside the 6-hour horizon)."""
    return st.dictionaries(st.integers(0, span_min), st.floats(low, high, allow_nan=False), max_size=40).map(
        lambda d: [Sample("ST", metric, at(minute), round(value, 3)) for minute, value in d.items()])


station_samples = st.tuples(
    metric_samples("water_level", 1.0, 3.6),
    metric_samples("rainfall", 0.0, 9.0),
    metric_samples("battery", 10.8, 12.8),
).map(lambda parts: parts[0] + parts[1] + parts[2])


def in_batches(samples: list, cuts: list[int]) -> list[list]:
    """Split ``samples`` at the given (sorted, deduplicated) positions."""
    edges = [0, *sorted({c % (len(samples) + 1) for c in cuts}), len(samples)]
    return [samples[a:b] for a, b in zip(edges, edges[1:])]


def run_batches(batches, rules=RULES):
    """Judge batch after batch with the state round-tripped through JSON, as storage does."""
    state, events = None, []
    for batch in batches:
        judgement = judge(rules, state, batch)
        events.extend(judgement.events)
        state = json.loads(json.dumps(judgement.state))
    return state, events, judgement.levels


def sorted_samples(samples):
    return sorted(samples, key=lambda s: (s.ts, s.metric))


@PROPS
@given(values=st.lists(st.floats(1.9 + 1e-6, 2.1), min_size=1, max_size=60), hold=st.sampled_from([0, 600, 1800]))
def test_oscillation_within_the_margin_gives_at_most_one_transition(values, hold):
    rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1,
                                         "hold_s": hold, "clear_hold_s": 600,
                                         "rise_rate": {"per_hour": 0.5, "level": "waspada"}}})
    samples = [Sample("ST", "water_level", at(10 * i), v) for i, v in enumerate(values)]
    assert len(judge(rules, None, samples).events) <= 1


@PROPS
@given(values=st.lists(st.floats(2.9 + 1e-6, 3.1), min_size=1, max_size=60))
def test_oscillation_at_awas_after_siaga_gives_at_most_one_transition(values):
    rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1,
                                         "clear_hold_s": 600}})
    first = judge(rules, None, [Sample("ST", "water_level", at(0), 2.7)])
    samples = [Sample("ST", "water_level", at(10 * (i + 1)), v) for i, v in enumerate(values)]
    assert len(judge(rules, first.state, samples).events) <= 1


@PROPS
@given(
    bands=st.tuples(
        st.lists(st.floats(0.5, 1.99), max_size=5),
        st.lists(st.floats(2.0, 2.49), min_size=1, max_size=5),
        st.lists(st.floats(2.5, 2.99), min_size=1, max_size=5),
        st.lists(st.floats(3.0, 5.0), min_size=1, max_size=5),
    ),
    step=st.integers(1, 60),
)
def test_monotonic_rise_raises_then_escalates_twice(bands, step):
    # Without a rise-rate rule: with one, a fast rise that pauses raises and clears on the
    # rate alone before the thresholds are reached (see test_engine.py).
    rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1,
                                         "hold_s": 0, "clear_hold_s": 600}})
    values = sorted(v for band in bands for v in band)
    samples = [Sample("ST", "water_level", at(step * i), v) for i, v in enumerate(values)]
    events = judge(rules, None, samples).events
    assert [(e.type, e.level) for e in events] == [
        ("raised", Level.WASPADA), ("escalated", Level.SIAGA), ("escalated", Level.AWAS)]


@PROPS
@given(samples=station_samples, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 200)))
def test_levels_do_not_depend_on_arrival_order(samples, order, cuts):
    expected = judge(RULES, None, sorted_samples(samples))
    shuffled = list(samples)
    order.shuffle(shuffled)
    state, _events, levels = run_batches(in_batches(shuffled, cuts))
    assert levels == expected.levels
    # Not only the levels: every timer and window ends up the same.
    assert state["current"]["kinds"] == json.loads(json.dumps(expected.state["current"]["kinds"]))


@PROPS
@given(samples=station_samples, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 200)))
def test_replaying_the_same_samples_gives_no_new_events(samples, order, cuts):
    shuffled = list(samples)
    order.shuffle(shuffled)
    state, _events, levels = run_batches(in_batches(shuffled, cuts))
    again = judge(RULES, state, samples)
    assert again.events == []
    assert again.levels == levels


@PROPS
@given(samples=station_samples, cuts=st.lists(st.integers(0, 200)))
def test_batches_and_restarts_give_the_same_events_as_one_batch(samples, cuts):
    ordered = sorted_samples(samples)
    one = judge(RULES, None, ordered)
    _state, events, levels = run_batches(in_batches(ordered, cuts))
    assert events == one.events
    assert levels == one.levels


@PROPS
@given(samples=station_samples)
def test_events_alternate_consistently(samples):
    """Per kind, each event starts from the level the previous one ended at."""
    events = judge(RULES, None, sorted_samples(samples)).events
    for kind in ("water_level", "rainfall", "battery"):
        level = Level.NORMAL
        for event in (e for e in events if e.kind == kind):
            if event.type == "raised":
                assert level is Level.NORMAL and event.level > level
            elif event.type == "cleared":
                assert level is not Level.NORMAL and event.level is Level.NORMAL
            elif event.type == "escalated":
                assert Level.NORMAL < level < event.level
            else:
                assert event.type == "deescalated" and Level.NORMAL < event.level < level
            level = event.level


spread_samples = st.tuples(
    st.dictionaries(st.integers(0, 1200), st.floats(1.0, 3.6, allow_nan=False), max_size=60).map(
        lambda d: [Sample("ST", "water_level", at(m), round(v, 3)) for m, v in d.items()]),
    st.dictionaries(st.integers(0, 1200), st.floats(0.0, 9.0, allow_nan=False), max_size=30).map(
        lambda d: [Sample("ST", "rainfall", at(m), round(v, 3)) for m, v in d.items()]),
).map(lambda parts: parts[0] + parts[1])


@PROPS
@given(samples=spread_samples, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 200)),
       writes=st.lists(st.booleans(), max_size=40))
def test_a_checkpoint_and_the_stored_samples_rebuild_the_state(samples, order, cuts, writes):
    # How ingest stores a state (service/station_states.py): a checkpoint now and then (always
    # after a batch with samples older than the horizon, which are stored but never judged) and
    # the base key after every batch; resume() must give back the very state judge() returned.
    shuffled = list(samples)
    order.shuffle(shuffled)
    state, stored, point = None, [], None
    for number, batch in enumerate(in_batches(shuffled, cuts)):
        judgement = judge(RULES, state, batch)
        state = judgement.state
        stored.extend(batch)
        if point is None or judgement.ignored or (writes[number] if number < len(writes) else False):
            point = json.loads(json.dumps(engine.checkpoint(state)))
        rebuilt = engine.resume(RULES, point, engine.base_key(state),
                                [(engine.micros(s.ts), s.metric, s.value) for s in stored])
        assert json.loads(json.dumps(rebuilt)) == json.loads(json.dumps(state))


def test_a_version_1_state_is_read_with_the_new_names():
    state = judge(RULES, None, [Sample("ST", "water_level", at(m), 1.5 + m / 100) for m in range(0, 600, 10)]).state
    v1 = json.loads(json.dumps(state))

    def old(snap):
        kinds = {}
        for kind, m in snap["kinds"].items():
            renamed = {{"threshold_level": "tl", "above_since": "up", "below_since": "down"}.get(k, k): v
                       for k, v in m.items()}
            if "rise" in renamed:
                renamed["rise"] = {"on": renamed["rise"]["on"], "below": renamed["rise"]["below_since"]}
            kinds[kind] = renamed
        return {"k": kinds, "wl": snap["water_levels"], "rain": snap["rain"], "last": snap["last"]}

    v1 = {"v": 1, "base": old(v1["base"]), "base_key": v1["base_key"], "cur": old(v1["current"]), "hz": v1["horizon"]}
    assert json.loads(json.dumps(engine.load_state(v1))) == json.loads(json.dumps(state))
    later = [Sample("ST", "water_level", at(700), 3.2)]
    assert judge(RULES, v1, later).events == judge(RULES, state, later).events
