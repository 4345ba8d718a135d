"""The rules engine: judges one station's samples against its rules (spec section 3).

``judge(rules, state, samples)`` is a pure function. ``state`` is what the previous call
returned (a JSON-serialisable dict, stored in ``station_state.engine``) or None for a new
station. Samples are judged by measurement time. The design (docs/rules.md):

* A *snapshot* is everything the judgement of the next sample needs: per kind the level,
  the hold and clear timers of each threshold, the reading that caused the level; the
  last hour of water levels (rise rate) and the last 24 h of rain increments (rolling
  sums). Its size is bounded by those windows, never by the station's history.
* The state keeps two snapshots: ``current`` (after every sample seen) and ``base`` (after
  every sample older than ``HORIZON_S`` before the newest one), plus the samples in
  between (``horizon``). An in-order sample is applied to ``current``. A late sample inside the
  horizon makes the engine replay ``base`` + the horizon samples in time order, so the
  outcome is the same as if it had arrived on time. A sample older than the horizon is
  not judged (``Judgement.ignored`` counts it); it is still stored by the caller.
* Events come from level changes: each in-order sample that changes a kind's level
  yields one event; after a replay, a kind whose current level differs from before
  yields one event naming the reading that caused the new level.
* Water levels pass the quality check first (``alerts/quality.py``, spec section 17): a
  doubtful one is held back until the next one confirms or refutes it, or until it is
  overdue (a ``RELEASE`` entry in the horizon records when a silent station's held sample
  was judged as it is, so a replay decides the same). The ``sensor`` kind is the staff-only
  level of data quality: up while a held sample would raise the water level, or while the
  level is stuck. ``state["quality_marks"]`` holds the marks (doubtful, spike) of the
  horizon's water levels, so a judgement reports only the marks that changed. A water level
  judged before stays judged in a replay (a doubt found after the fact does not retract what
  residents were told); ``state["kept"]`` notes where that overruled the check, so folding and
  ``resume`` (given ``kept_of(state)`` by the store) decide the same.

The rooms: ``model`` (constants, events, time keys), ``state`` (snapshots, loading, ``forget``),
``machine`` (threshold timers, sliding windows), ``water`` and ``rain`` (their steps), ``steps``
(one entry applied: the quality check, battery, sensor), ``checkpoints`` (what a store keeps, and
``resume``), ``folding`` (samples leaving the horizon: folded, or the base jumping to a stop), ``judging``
(``judge`` and its phases). This module names what the rest of the house uses.
"""

from __future__ import annotations

from alerts.engine.checkpoints import base_key, checkpoint, resume
from alerts.engine.folding import STOP_S, point_key
from alerts.engine.judging import judge, settled
from alerts.engine.model import (DEFAULT_EXPECTED_INTERVAL_S, ENGINE_KINDS, HORIZON_S, JUDGED_METRICS,
                                 PUBLIC_ENGINE_KINDS, RAIN_BUFFER_S, RELEASE, RISE_MIN_SPAN_S, RISE_WINDOW_S,
                                 STATE_VERSION, EngineEvent, Judgement, event_type, from_micros, iso, micros)
from alerts.engine.rain import current_rain_sums
from alerts.engine.state import forget, is_full_state, kept_of, levels_of, load_state, new_state

__all__ = [
    "DEFAULT_EXPECTED_INTERVAL_S", "ENGINE_KINDS", "HORIZON_S", "JUDGED_METRICS", "PUBLIC_ENGINE_KINDS",
    "RAIN_BUFFER_S", "RELEASE", "RISE_MIN_SPAN_S", "RISE_WINDOW_S", "STATE_VERSION", "STOP_S", "EngineEvent",
    "Judgement",
    "base_key", "checkpoint", "current_rain_sums", "event_type", "forget", "from_micros", "is_full_state", "iso",
    "judge", "kept_of", "levels_of", "load_state", "micros", "new_state", "point_key", "resume", "settled",
]
