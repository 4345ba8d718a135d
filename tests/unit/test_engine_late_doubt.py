"""A late sample that makes an already judged water level doubtful does not take its warning back (spec 17).

Seen in ``ews bench latency --backlog``: a live reading raised WASPADA; a backlog sample a few minutes older
arrived after it, and in the replay the live reading was a step too far from it, so held back as doubtful.
The replay's level was normal: residents were told "kembali NORMAL", and a second later, when the next
reading confirmed the jump, WASPADA again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.engine import judge
from alerts.model import Sample
from alerts.rules import parse_rules
from alerts.station_rules import rules_from_overrides
from service.station_rules import default_rules_doc

RULES = parse_rules(rules_from_overrides(default_rules_doc(), None))  # waspada 2.0 m, a step of 0.1 m a minute
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def water(minutes: float, value: float) -> Sample:
    return Sample("ST", "water_level", T + timedelta(minutes=minutes), value)


def water_events(judgement) -> list[tuple[str, str]]:
    return [(e.type, e.level.label) for e in judgement.events if e.kind == "water_level"]


def told(batches: list[list[Sample]], **options) -> list[list[tuple[str, str]]]:
    state, out = None, []
    for batch in batches:
        judgement = judge(RULES, state, batch, take_state=True, expected_interval_s=60, **options)
        state = judgement.state
        out.append(water_events(judgement))
    return out


def test_a_late_sample_that_makes_the_warning_s_reading_doubtful_tells_no_all_clear():
    earlier = [water(m, 1.95) for m in range(-60, -9)]  # up to 10 minutes before: just below the line
    crossing, late, next_one = water(0, 2.05), water(-5, 1.5), water(0.02, 2.06)
    for options in ({}, {"defer_fold": True}):
        events = told([earlier, [crossing], [late], [next_one]], **options)
        assert events[1] == [("raised", "waspada")]
        assert events[2] == []  # 2.05 m five minutes after 1.5 m is doubtful now: no all-clear while it is
        assert events[3] in ([], [("raised", "waspada")])  # confirmed: the open alert stays as it is


def test_a_sample_that_arrives_in_time_holds_the_jump_back_as_before():
    earlier = [water(m, 1.95) for m in range(-60, -9)]
    events = told([earlier + [water(-5, 1.5)], [water(0, 2.05)], [water(0.02, 2.06)]])
    assert events == [[], [], [("raised", "waspada")]]
