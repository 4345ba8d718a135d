"""After start-up the collector leaves start-up's objects alone, and young collections come less often."""

from __future__ import annotations

import gc

import pytest

from service.heap import YOUNG_THRESHOLD, settle_after_startup


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
