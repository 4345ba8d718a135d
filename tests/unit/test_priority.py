"""Spec section 10, "Urgent first": one ranking of every notification (alerts.priority)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts import priority

LEVELS = ["waspada", "siaga", "awas"]
NOTIFICATION = st.one_of(
    st.tuples(st.just("warning"), st.sampled_from(LEVELS), st.booleans()),
    st.tuples(st.sampled_from(["reminder", "all_clear", "reply", "broadcast", "operational"]), st.none(), st.booleans()),
)


def rank(item):
    kind, level, exercise = item
    return priority.priority(kind, level, exercise=exercise)


def test_the_order_of_section_10():
    order = [("warning", "awas"), ("warning", "siaga"), ("warning", "waspada"), ("reminder", None),
             ("broadcast", None), ("operational", None)]
    ranks = [priority.priority(kind, level) for kind, level in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert priority.priority("reminder") == priority.priority("all_clear")  # "reminders and all-clears"


def test_replies_come_after_every_warning_and_before_broadcasts():
    assert priority.priority("reminder") < priority.priority("reply") < priority.priority("broadcast")


def test_level_names_are_case_insensitive_and_an_unknown_level_is_the_lowest_warning():
    assert priority.priority("warning", "AWAS") == 0
    assert priority.priority("warning", None) == priority.priority("warning", "waspada")


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown notification kind"):
        priority.priority("sms")


@given(NOTIFICATION, NOTIFICATION)
def test_real_warnings_beat_everything_else_and_exercises_never_beat_a_real_message(a, b):
    if a[0] == "warning" and not a[2] and not (b[0] == "warning" and not b[2]):
        assert rank(a) < rank(b)
    if a[2] and not b[2]:
        assert rank(a) > rank(b)
    if a[0] == b[0] == "warning" and not a[2] and not b[2]:
        assert (rank(a) < rank(b)) == (LEVELS.index(a[1]) > LEVELS.index(b[1]))


@given(NOTIFICATION)
def test_every_rank_has_a_priority_letter_and_letters_sort_like_ranks(item):
    assert priority.letter(rank(item)) == "ABCDEFGH"[rank(item)]


def test_letters_outside_the_ranks_are_refused():
    with pytest.raises(ValueError):
        priority.letter(8)
