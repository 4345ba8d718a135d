"""Giving a batch's inserted samples to the messages that offered them (service/samples.py assign_inserted)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.model import Sample
from service.samples import Offered, assign, assign_inserted, unique

START = datetime(2026, 12, 2, 4, 0, tzinfo=timezone.utc)


def _offer(minutes: list[int], value: float = 1.0) -> Offered:
    samples = [Sample("LWT-001", "water_level", START + timedelta(minutes=m), value + m) for m in minutes]
    return Offered(samples, list(range(len(samples))))


def _outcome(offers: list[Offered]) -> list[tuple]:
    return [([s.ts for s in o.kept], o.duplicates, [r.reason for r in o.conflicts]) for o in offers]


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.lists(st.integers(0, 6), max_size=4), min_size=1, max_size=5), st.sets(st.integers(0, 6)))
def test_the_shortcut_gives_what_the_sample_by_sample_way_gives(minutes_per_message, stored_before):
    offers = [_offer(minutes) for minutes in minutes_per_message]
    offered = unique(s for offer in offers for s in offer.samples)
    inserted = [s for s in offered if s.ts - START not in {timedelta(minutes=m) for m in stored_before}]
    reference = copy.deepcopy(offers)
    skipped_ref = assign(reference, inserted, {(s.metric, s.ts): s.value for s in offered})
    skipped = assign_inserted(offers, offered, inserted, all_inserted=len(inserted) == len(offered))
    assert _outcome(offers) == _outcome(reference)
    assert [(s.sample.ts, s.index) for s in skipped] == [(s.sample.ts, s.index) for s in skipped_ref]


def test_every_message_keeps_its_own_samples_when_all_went_in():
    offers = [_offer([0, 1]), _offer([2])]
    offered = unique(s for offer in offers for s in offer.samples)
    assert assign_inserted(offers, offered, offered, all_inserted=True) == []
    assert [[s.ts.minute for s in o.kept] for o in offers] == [[0, 1], [2]]


def test_a_repeat_inside_the_batch_is_still_a_duplicate():
    offers = [_offer([0]), _offer([0])]
    offered = unique(s for offer in offers for s in offer.samples)
    assign_inserted(offers, offered, offered, all_inserted=True)
    assert _outcome(offers) == [([START], 0, []), ([], 1, [])]
