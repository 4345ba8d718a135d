"""Table tests of every rule of the engine (spec section 3), by measurement time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from alerts.engine import HORIZON_S, current_rain_sums, judge
from alerts.levels import Level
from alerts.model import Sample
from alerts.rules import parse_rules

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
W, S, A, N = Level.WASPADA, Level.SIAGA, Level.AWAS, Level.NORMAL

WATER = {"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1,
                         "hold_s": 0, "clear_hold_s": 600}}
RAIN = {"rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                     "24h": {"waspada": 50, "siaga": 100, "awas": 150}, "clear_hold_s": 1800}}


def series(metric: str, values, step_min: float = 10, start: datetime = T0) -> list[Sample]:
    return [Sample("ST", metric, start + timedelta(minutes=step_min * i), v) for i, v in enumerate(values)]


def run(doc: dict, samples, state=None):
    return judge(parse_rules(doc), state, samples)


def trace(judgement) -> list[tuple[str, str, Level]]:
    return [(e.kind, e.type, e.level) for e in judgement.events]


def test_first_sample_below_everything_is_quiet():
    j = run(WATER, series("water_level", [1.0]))
    assert j.events == [] and j.level is N
    assert j.levels == {"water_level": N, "rainfall": N, "battery": N, "sensor": N}
    json.dumps(j.state)  # storable as is


def test_threshold_reached_raises_with_the_causing_reading():
    j = run(WATER, series("water_level", [1.9, 2.0]))
    assert trace(j) == [("water_level", "raised", W)]
    event = j.events[0]
    assert event.at == T0 + timedelta(minutes=10)
    assert event.reading == {"metric": "water_level", "value": 2.0, "ts": "2026-11-30T06:10:00Z"}


def test_jump_straight_to_awas_is_one_raise():
    assert trace(run(WATER, series("water_level", [1.0, 3.2]))) == [("water_level", "raised", A)]


def test_monotonic_rise_raises_then_escalates_twice():
    j = run(WATER, series("water_level", [1.8, 2.1, 2.6, 3.1]))
    assert trace(j) == [("water_level", "raised", W), ("water_level", "escalated", S), ("water_level", "escalated", A)]


def test_hold_s_needs_the_value_to_stay_up():
    doc = {"water_level": {**WATER["water_level"], "hold_s": 1200}}
    # Up at 10 and 20 min, dips at 30, up again from 40: entered at 40 + 20 min = 60 min.
    j = run(doc, series("water_level", [1.0, 2.1, 2.2, 1.95, 2.1, 2.1, 2.2]))
    assert trace(j) == [("water_level", "raised", W)]
    assert j.events[0].at == T0 + timedelta(minutes=60)


def test_hysteresis_needs_value_below_margin_for_clear_hold():
    # At 2.1 (waspada); 1.95 is inside the margin (clear line 1.9): stays.
    j = run(WATER, series("water_level", [2.1, 1.95, 1.92, 1.95]))
    assert trace(j) == [("water_level", "raised", W)]
    # Below 1.9 for 10 minutes (clear_hold_s=600) clears; one sample below is not enough.
    j = run(WATER, series("water_level", [2.1, 1.85, 1.95, 1.85, 1.8]))
    assert trace(j) == [("water_level", "raised", W), ("water_level", "cleared", N)]
    assert j.events[-1].at == T0 + timedelta(minutes=40)


def test_deescalation_steps_down_through_hysteresis():
    # awas -> 2.45 is below awas's clear line and inside siaga's margin: down to siaga.
    j = run(WATER, series("water_level", [3.1, 2.45, 2.45, 2.45]))
    assert trace(j) == [("water_level", "raised", A), ("water_level", "deescalated", S)]
    # awas -> 1.0 clears everything at once after the clear hold.
    j = run(WATER, series("water_level", [3.1, 1.0, 1.0]))
    assert trace(j) == [("water_level", "raised", A), ("water_level", "cleared", N)]


def test_escalation_is_immediate_while_clear_is_pending():
    j = run(WATER, series("water_level", [2.6, 2.35, 3.0]))
    assert trace(j) == [("water_level", "raised", S), ("water_level", "escalated", A)]


def test_missing_levels_are_skipped():
    doc = {"water_level": {"waspada": 2.0, "awas": 3.0, "clear_margin": 0.1, "clear_hold_s": 0}}
    j = run(doc, series("water_level", [3.1, 2.5, 1.0]))
    assert trace(j) == [("water_level", "raised", A), ("water_level", "deescalated", W),
                        ("water_level", "cleared", N)]


def test_rise_rate_raises_at_least_its_level():
    doc = {"water_level": {**WATER["water_level"], "rise_rate": {"per_hour": 0.5, "level": "siaga"}}}
    # 1.0 -> 1.4 in 40 minutes is 0.6 m/h: below every threshold but rising fast.
    j = run(doc, series("water_level", [1.0, 1.1, 1.2, 1.3, 1.4]))
    assert trace(j) == [("water_level", "raised", S)]
    assert j.events[0].at == T0 + timedelta(minutes=30)  # needs 30 minutes of span
    assert j.events[0].reading["rate_per_hour"] >= 0.5


def test_rise_rate_needs_half_an_hour_of_span():
    doc = {"water_level": {**WATER["water_level"], "rise_rate": {"per_hour": 0.5, "level": "waspada"}}}
    # A 20 cm jump in 10 minutes is not a trend yet.
    assert run(doc, series("water_level", [1.0, 1.2])).events == []


def test_rise_rate_clears_after_clear_hold_when_it_stops_rising():
    doc = {"water_level": {**WATER["water_level"], "rise_rate": {"per_hour": 0.5, "level": "waspada"}}}
    values = [1.0, 1.1, 1.2, 1.3] + [1.3] * 12
    j = run(doc, series("water_level", values))
    assert trace(j) == [("water_level", "raised", W), ("water_level", "cleared", N)]


def test_noise_does_not_trigger_rise_rate():
    doc = {"water_level": {**WATER["water_level"], "rise_rate": {"per_hour": 0.4, "level": "waspada"}}}
    noisy = [1.0 + (0.05 if i % 2 else -0.05) for i in range(36)]
    assert run(doc, series("water_level", noisy)).events == []


def test_rainfall_windows():
    # 2.5 mm every 10 minutes: the 4th sample makes the 1-hour sum 10 mm.
    j = run(RAIN, series("rainfall", [2.5] * 4))
    assert trace(j) == [("rainfall", "raised", W)]
    assert j.events[0].reading["sums"]["1h"] == 10.0
    # 4 mm per 10 minutes: 20 mm after 5 samples -> siaga.
    j = run(RAIN, series("rainfall", [4] * 5))
    assert trace(j) == [("rainfall", "raised", W), ("rainfall", "escalated", S)]


def test_rainfall_window_is_rolling_and_clears_after_hold():
    # 12 mm in one burst, then dry: the 1-hour sum drops below 10 at +60 min, clear 30 min later.
    j = run(RAIN, series("rainfall", [12] + [0] * 12))
    assert trace(j) == [("rainfall", "raised", W), ("rainfall", "cleared", N)]
    assert j.events[-1].at == T0 + timedelta(minutes=90)


def test_24h_sum_holds_the_level():
    # 60 mm in the first hour (awas on 1h, waspada on 24h), then light rain: the 24-hour sum keeps waspada.
    values = [10] * 6 + [0.1] * 60
    j = run(RAIN, series("rainfall", values))
    assert j.level is W
    assert trace(j)[0] == ("rainfall", "raised", W)
    assert ("rainfall", "escalated", A) in trace(j)
    assert trace(j)[-1] == ("rainfall", "deescalated", W)


def test_battery_low_and_clear_with_margin():
    doc = {"battery": {"low": 11.5, "clear_margin": 0.3}}
    j = run(doc, series("battery", [12.5, 11.4, 11.6, 11.7, 11.8]))
    assert trace(j) == [("battery", "raised", W), ("battery", "cleared", N)]
    assert j.events[-1].reading["value"] == 11.8
    assert j.level is N  # battery is station health, not a flood level


def test_signal_and_unknown_metrics_are_ignored():
    j = run(WATER, series("signal", [-90, -120]) + series("rain_tips", [1, 2]))
    assert j.events == [] and j.state["horizon"] == []


def test_replaying_a_batch_changes_nothing():
    samples = series("water_level", [1.8, 2.1, 2.6, 3.1])
    first = run(WATER, samples)
    again = run(WATER, samples, first.state)
    assert again.events == [] and again.level is A


def test_late_sample_is_judged_by_measurement_time():
    # 2.1 at 06:20 arrives after the 06:30 and 06:40 readings.
    on_time = run(WATER, series("water_level", [1.0, 1.5]))
    later = run(WATER, [Sample("ST", "water_level", T0 + timedelta(minutes=30), 1.6),
                        Sample("ST", "water_level", T0 + timedelta(minutes=40), 1.6)], on_time.state)
    assert later.events == []
    late = run(WATER, [Sample("ST", "water_level", T0 + timedelta(minutes=20), 2.1)], later.state)
    # Replayed: waspada from 06:20, below the clear line from 06:30, cleared at 06:40. The
    # level now is normal as before, so the late sample opens no episode after the fact.
    assert late.events == [] and late.level is N


def test_late_sample_that_changes_the_outcome_yields_one_event():
    doc = {"water_level": {**WATER["water_level"], "clear_hold_s": 3600}}
    j = run(doc, series("water_level", [1.0, 1.5, 1.6, 1.6]))  # 06:00..06:30
    late = run(doc, [Sample("ST", "water_level", T0 + timedelta(minutes=5), 2.6)], j.state)
    # The river was at siaga at 06:05 and has not been below its clear line for an hour since.
    assert trace(late) == [("water_level", "raised", S)]
    assert late.events[0].at == T0 + timedelta(minutes=5)
    assert late.events[0].reading["value"] == 2.6


def test_sample_older_than_horizon_is_not_judged():
    j = run(WATER, series("water_level", [1.0] * 3, step_min=(HORIZON_S / 60 + 60)))
    old = run(WATER, [Sample("ST", "water_level", T0 + timedelta(minutes=1), 3.5)], j.state)
    assert old.events == [] and old.ignored == 1


def test_state_is_bounded_by_the_windows():
    # Three days of 10-minute samples: the state keeps only the horizon and the windows.
    samples = series("water_level", [1.0] * 432) + series("rainfall", [0.2] * 432) + series("battery", [12.5] * 432)
    j = run({**WATER, **RAIN}, samples)
    assert len(j.state["horizon"]) <= 3 * (HORIZON_S // 600 + 1)
    assert len(j.state["current"]["rain"]) <= 24 * 6
    assert len(j.state["current"]["water_levels"]) <= 7


def test_state_survives_json_and_resumes_pending_timers():
    doc = {"water_level": {**WATER["water_level"], "hold_s": 1200}}
    j = run(doc, series("water_level", [2.1, 2.1]))
    assert j.events == []  # hold pending
    state = json.loads(json.dumps(j.state))
    resumed = run(doc, [Sample("ST", "water_level", T0 + timedelta(minutes=20), 2.1)], state)
    assert trace(resumed) == [("water_level", "raised", W)]


def test_removing_a_rule_clears_on_the_next_sample():
    j = run(WATER, series("water_level", [2.6]))
    again = run({"water_level": None}, [Sample("ST", "water_level", T0 + timedelta(minutes=10), 2.6)], j.state)
    assert trace(again) == [("water_level", "cleared", N)]


def test_current_rain_sums():
    j = run(RAIN, series("rainfall", [1.0] * 12))
    assert current_rain_sums(j.state) == {"1h": 6.0, "3h": 12.0, "24h": 12.0}
    assert current_rain_sums(None) is None


def test_caller_state_is_not_mutated():
    j = run(WATER, series("water_level", [1.0, 2.1]))
    snapshot = json.dumps(j.state, sort_keys=True)
    run(WATER, series("water_level", [3.0], start=T0 + timedelta(hours=1)), j.state)
    run(WATER, series("water_level", [3.0], start=T0 + timedelta(minutes=5)), j.state)
    assert json.dumps(j.state, sort_keys=True) == snapshot


def test_forget_puts_one_kind_back_at_normal_and_its_next_sample_opens_a_new_episode():
    from alerts.engine import forget

    rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0}, "battery": {"low": 11.5}})
    t = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    high = judge(rules, None, [Sample("S", "water_level", t, 3.3), Sample("S", "battery", t, 11.0)], take_state=True)
    assert high.level == Level.AWAS
    again = judge(rules, high.state, [Sample("S", "water_level", t + timedelta(minutes=10), 3.3)])
    assert again.events == []  # still AWAS: nothing new
    afresh = judge(rules, forget(high.state, "water_level"), [Sample("S", "water_level", t + timedelta(minutes=10), 3.3)])
    assert [(e.kind, e.type, e.level) for e in afresh.events] == [("water_level", "raised", Level.AWAS)]
    battery = judge(rules, forget(high.state, "water_level"), [Sample("S", "battery", t + timedelta(minutes=10), 11.0)])
    assert battery.events == []  # the other kinds are untouched


def test_a_forgotten_kind_stays_forgotten_through_a_checkpoint_and_a_replay_of_the_stored_samples():
    from alerts import engine

    rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0}})
    t = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    samples = [Sample("S", "water_level", t + timedelta(minutes=10 * i), 3.3) for i in range(3)]
    forgotten = engine.forget(judge(rules, None, samples, take_state=True).state, "water_level")
    point = engine.checkpoint(forgotten)
    entries = [(engine.micros(s.ts), s.metric, s.value) for s in samples]  # what a restart reads back
    resumed = engine.resume(rules, point, engine.base_key(forgotten), entries)
    assert engine.levels_of(resumed)["water_level"] == Level.NORMAL
    nxt = judge(rules, resumed, [Sample("S", "water_level", t + timedelta(minutes=30), 3.3)])
    assert [(e.type, e.level) for e in nxt.events] == [("raised", Level.AWAS)]
