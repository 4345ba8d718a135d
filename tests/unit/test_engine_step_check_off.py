"""``quality.max_step_per_min: null`` turns the step check off (spec 17): a late sample is judged, not a crash."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.engine import judge
from alerts.model import Sample
from alerts.rules import parse_rules
from alerts.station_rules import rules_from_overrides
from service.station_rules import default_rules_doc

T = datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc)


def _rules(step):
    doc = rules_from_overrides(default_rules_doc(), None)
    doc["quality"] = {**doc["quality"], "max_step_per_min": step}
    return parse_rules(doc)


def water(minutes: float, value: float) -> Sample:
    return Sample("ST", "water_level", T + timedelta(minutes=minutes), value)


def test_a_late_water_level_with_the_step_check_off_is_judged_like_any_other():
    rules = _rules(None)
    for options in ({}, {"defer_fold": True}):
        state = judge(rules, None, [water(0, 1.0), water(2, 1.1)], take_state=True, expected_interval_s=60,
                      **options).state
        late = judge(rules, state, [water(1, 2.6)], take_state=True, expected_interval_s=60, **options)
        in_order = judge(rules, None, [water(0, 1.0), water(1, 2.6), water(2, 1.1)], take_state=True,
                         expected_interval_s=60, **options)
        assert late.ignored == 0
        assert late.level == in_order.level  # as if it had come in time: SIAGA, held by the clear time
        assert [(e.type, e.level.label) for e in late.events if e.kind == "water_level"] == [("raised", "siaga")]


def test_with_the_check_off_a_jump_is_told_at_once():
    rules = _rules(None)
    judgement = judge(rules, None, [water(0, 1.0), water(1, 2.6)], take_state=True, expected_interval_s=60)
    assert [(e.type, e.level.label) for e in judgement.events if e.kind == "water_level"] == [("raised", "siaga")]
