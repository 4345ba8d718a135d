"""After start-up the collector leaves start-up's objects alone, and young collections come less often."""

from __future__ import annotations

import gc

import pytest

from service.heap import YOUNG_THRESHOLD, collector_waits, settle_after_startup


@pytest.fixture
def collector():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_startup_objects_are_frozen_and_the_young_threshold_raised(collector):
    built = [[n] for n in range(1000)]  # what start-up built and keeps
    settle_after_startup()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_the_collector_waits_inside_a_batch_and_is_as_it_was_after(collector):
    with collector_waits():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with collector_waits():
        pass
    assert not gc.isenabled()  # someone else had switched it off: it stays off
    gc.enable()
