"""Data quality before judgment (spec section 17): spike confirmation, silence, flatline, restarts, late samples."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from alerts.engine import judge
from alerts.levels import Level
from alerts.model import Sample
from alerts.rules import RulesError, parse_rules
from alerts.station_rules import replace_rules

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
W, S, A, N = Level.WASPADA, Level.SIAGA, Level.AWAS, Level.NORMAL
QUALITY = {"max_step_per_min": 0.1, "flatline_s": 21600, "flatline_tolerance": 0.002}
# KLN-WOTU's thresholds (config/seed/luwu-timur.json).
KLN = {"water_level": {"waspada": 2.8, "siaga": 3.5, "awas": 4.2, "clear_margin": 0.1, "hold_s": 0,
                       "clear_hold_s": 600, "rise_rate": {"per_hour": 0.5, "level": "waspada"}},
       "quality": QUALITY}
KLN_OFF = {**KLN, "quality": {**QUALITY, "max_step_per_min": None}}


def levels(values, start_min: int = 0, step_min: int = 10) -> list[Sample]:
    return [Sample("KLN-WOTU", "water_level", T0 + timedelta(minutes=start_min + step_min * i), v)
            for i, v in enumerate(values)]


def steady(count: int = 12) -> list[Sample]:
    """Two hours of 1.40-1.41 m every 10 minutes (the KLN-WOTU case)."""
    return levels([1.40 + 0.01 * (i % 2) for i in range(count)])


def after(history: list[Sample], values) -> list[Sample]:
    start = int((history[-1].ts - T0).total_seconds() // 60) + 10
    return levels(values, start_min=start)


def feed(doc, batches, *, roundtrip: bool = True, interval_s: float = 600):
    """Judge batch after batch (the state through JSON, as storage keeps it); return every judgement."""
    rules, state, out = parse_rules(doc), None, []
    for batch in batches:
        j = judge(rules, state, batch, expected_interval_s=interval_s)
        out.append(j)
        state = json.loads(json.dumps(j.state)) if roundtrip else j.state
    return out


def kinds(judgements, kind: str) -> list[tuple[str, Level, float | None]]:
    return [(e.type, e.level, e.reading.get("value")) for j in judgements for e in j.events if e.kind == kind]


def test_a_single_wild_value_is_a_spike_and_changes_no_level():
    history = steady()
    wild, back = after(history, [4.6, 1.41])
    js = feed(KLN, [history, [wild], [back]])
    assert kinds(js, "water_level") == []
    assert [j.level for j in js] == [N, N, N]
    # Staff hear of it at once (it would give AWAS), and it is over when the next sample refutes it.
    assert kinds(js, "sensor") == [("raised", W, 4.6), ("cleared", N, 1.41)]
    raised = js[1].events[0]
    assert raised.at == wild.ts and raised.reading["quality"] == "doubtful" and raised.reading["would_be"] == "awas"
    assert js[2].events[0].reading["quality"] == "spike"
    assert js[1].quality == {wild.ts: "doubtful"} and js[2].quality == {wild.ts: "spike"}
    assert js[1].overdue_at == wild.ts + timedelta(seconds=1200) and js[2].overdue_at is None


def test_without_the_check_the_wild_value_raises_awas():
    history = steady()
    js = feed(KLN_OFF, [history, after(history, [4.6])])
    assert kinds(js, "water_level") == [("raised", A, 4.6)]


def test_a_real_rise_faster_than_the_step_is_judged_one_sample_later():
    history = steady()
    rise = after(history, [2.6, 3.4, 4.5, 4.9])
    on = feed(KLN, [history] + [[s] for s in rise])
    off = feed(KLN_OFF, [history] + [[s] for s in rise])
    assert [j.levels["water_level"] for j in off[1:]] == [W, W, A, A]
    assert [j.levels["water_level"] for j in on[1:]] == [N, W, W, A]
    # The first doubtful sample (it would raise waspada by the rise rate) reached staff at once.
    assert kinds(on[1:2], "sensor") == [("raised", W, 2.6)]
    # Confirmed: judged at its own measurement time, so the episode starts when it did.
    assert [(e.type, e.level, e.at) for e in on[2].events if e.kind == "water_level"] == [("raised", W, rise[0].ts)]
    assert on[2].quality == {rise[0].ts: "good"}
    assert kinds(on[3:4], "sensor") == [("raised", W, 4.5)]
    assert [(e.type, e.level, e.at) for e in on[4].events if e.kind == "water_level"] == [("escalated", A, rise[2].ts)]
    assert on[-1].state["current"]["kinds"]["water_level"] == off[-1].state["current"]["kinds"]["water_level"]


def test_a_doubtful_sample_followed_by_silence_is_judged_after_two_intervals():
    history = steady()
    (wild,) = after(history, [4.6])
    rules = parse_rules(KLN)
    state = judge(rules, None, history, expected_interval_s=600).state
    held = judge(rules, state, [wild], expected_interval_s=600)
    early = judge(rules, json.loads(json.dumps(held.state)), [], expected_interval_s=600,
                  now=wild.ts + timedelta(seconds=1199))
    assert early.events == [] and early.level is N
    late = judge(rules, json.loads(json.dumps(held.state)), [], expected_interval_s=600,
                 now=wild.ts + timedelta(seconds=1260))
    assert [(e.kind, e.type, e.level, e.at) for e in late.events] == [
        ("water_level", "raised", A, wild.ts), ("sensor", "cleared", N, wild.ts + timedelta(seconds=1200))]
    assert late.quality == {} and late.overdue_at is None  # it stays marked doubtful: judged, never confirmed
    # The sample after the silence is judged against the released one, not held again.
    (back,) = levels([1.41], start_min=int((wild.ts - T0).total_seconds() // 60) + 30)
    following = judge(rules, late.state, [back], expected_interval_s=600)
    assert following.quality == {back.ts: "doubtful"} and following.levels["water_level"] is A


def test_the_next_sample_after_the_silence_judges_the_held_one_first():
    history = steady()
    (wild,) = after(history, [4.6])
    (later,) = levels([4.65], start_min=int((wild.ts - T0).total_seconds() // 60) + 25)
    js = feed(KLN, [history, [wild], [later]])
    assert kinds(js, "water_level") == [("raised", A, 4.6)]
    assert js[2].quality == {}  # judged as it was (doubtful), and 4.65 is within the step of it


def test_a_doubtful_sample_survives_a_restart():
    history = steady()
    wild, back = after(history, [4.6, 1.41])
    kept = feed(KLN, [history, [wild]])[-1].state
    stored = json.loads(json.dumps(kept))
    assert stored["current"]["quality"]["pend"][1] == 4.6
    j = judge(parse_rules(KLN), stored, [back], expected_interval_s=600)
    assert j.quality == {wild.ts: "spike"} and not [e for e in j.events if e.kind == "water_level"]


def test_a_late_sample_is_checked_in_measurement_order():
    history = steady()
    first, middle, last = after(history, [2.6, 3.4, 4.3])
    in_order = feed(KLN, [history, [first], [middle], [last]])
    shuffled = feed(KLN, [history, [first], [last], [middle]])
    assert in_order[-1].levels == shuffled[-1].levels
    assert in_order[-1].state["current"]["kinds"] == shuffled[-1].state["current"]["kinds"]
    marks = {}
    for j in shuffled:
        marks.update(j.quality)
    assert {ts: m for ts, m in marks.items() if m != "good"} == {}


def test_a_late_sample_can_turn_a_spike_into_a_confirmed_jump():
    history = steady()
    (jump,) = after(history, [2.6])
    minute = int((jump.ts - T0).total_seconds() // 60)
    (late,) = levels([2.7], start_min=minute + 5)
    (back,) = levels([1.42], start_min=minute + 10)
    # 2.6, then (as it arrives) 1.42 refutes it; the late 2.7 between them shows the river was up.
    js = feed(KLN, [history, [jump], [back], [late]])
    assert js[2].quality == {jump.ts: "spike"}
    assert js[3].quality == {jump.ts: "good"}  # a replay may accept more...
    # ...but never retracts a decision made in order: 1.42 m was accepted when it came (its step from the
    # accepted 1.41 m), so it stays judged, though in measurement order it would follow 2.7 and be held back.
    assert js[3].state["current"]["quality"]["pend"] is None
    reference = feed(KLN, [history, [jump], [late], [back]])
    assert reference[-1].quality == {back.ts: "doubtful"}
    assert js[-1].levels == reference[-1].levels


def test_two_wild_steps_in_a_row_judge_the_first_and_hold_the_second():
    history = steady()
    first, second = after(history, [3.0, 4.6])
    js = feed(KLN, [history, [first], [second]])
    assert js[2].levels["water_level"] is W and js[2].quality == {second.ts: "doubtful"}
    assert js[2].state["current"]["quality"]["pend"][1] == 4.6


def test_a_doubtful_sample_that_raises_nothing_tells_no_one():
    history = steady()
    small = after(history, [2.6])  # beyond the step, but KLN's rise rate is off here
    doc = {**KLN, "water_level": {**KLN["water_level"], "rise_rate": None}}
    js = feed(doc, [history, small])
    assert js[1].quality == {small[0].ts: "doubtful"} and js[1].events == []


def test_a_stuck_level_for_six_hours_is_a_sensor_alert_until_it_moves():
    stuck = levels([1.20 + 0.001 * (i % 3 == 0) for i in range(40)])  # 6 h 30 min within 1 mm
    moved = levels([1.26], start_min=400)
    js = feed(KLN, [stuck, moved])
    sensor = [e for j in js for e in j.events if e.kind == "sensor"]
    assert [(e.type, e.level) for e in sensor] == [("raised", W), ("cleared", N)]
    assert sensor[0].at == T0 + timedelta(hours=6) and sensor[0].reading["flatline_s"] == 21600
    assert sensor[1].reading["ended"] == "flatline" and sensor[1].at == moved[0].ts
    assert all(j.levels["water_level"] is N for j in js)


def test_rain_at_zero_for_a_week_raises_nothing():
    doc = {"rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40}}, "quality": QUALITY}
    dry = [Sample("ARR", "rainfall", T0 + timedelta(minutes=10 * i), 0.0) for i in range(7 * 144)]
    j = judge(parse_rules(doc), None, dry)
    assert j.events == [] and j.levels["sensor"] is N


def test_flatline_off_with_null():
    doc = {**KLN, "quality": {**QUALITY, "flatline_s": None}}
    j = judge(parse_rules(doc), None, levels([1.2] * 50))
    assert j.events == []


def test_rules_validation_names_the_field():
    with pytest.raises(RulesError) as err:
        parse_rules({"quality": {"max_step_per_min": -1, "flatline_s": "long", "flatline_tolerance": -0.1,
                                 "colour": 1}})
    fields = [field for field, _ in err.value.errors]
    assert fields == ["quality.colour", "quality.max_step_per_min", "quality.flatline_s",
                      "quality.flatline_tolerance"]


def test_a_put_takes_the_quality_defaults_and_keeps_a_null():
    defaults = json.loads(open("config/rules/defaults.json", encoding="utf-8").read())
    body = {"water_level": {"waspada": 2.8, "siaga": 3.5, "awas": 4.2}}
    assert replace_rules(body, defaults).quality.max_step_per_min == 0.1
    off = replace_rules({**body, "quality": {"max_step_per_min": None}}, defaults).quality
    assert off.max_step_per_min is None and off.flatline_s == 21600
