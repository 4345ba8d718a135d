"""The engine's vocabulary: its constants, its kinds, an event, a judgement, and its time keys."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from alerts.levels import Level, change_type
from alerts.model import PUBLIC_ALERT_KINDS
from alerts.times import rfc3339

STATE_VERSION = 2  # 2: readable names (1 is still read, see alerts.engine.state.from_v1)
HORIZON_S = 6 * 3600  # how late a sample may arrive and still be judged
RISE_WINDOW_S = 3600  # the rise rate compares with the sample about an hour earlier...
RISE_MIN_SPAN_S = 1800  # ...and needs at least half an hour of span (10-minute noise)
RAIN_BUFFER_S = 24 * 3600  # the longest rainfall window

DEFAULT_EXPECTED_INTERVAL_S = 600  # a station's sampling interval when the caller does not say

# The kinds the engine judges: one per judged metric, plus ``sensor`` (data quality of water levels).
JUDGED_METRICS = ("water_level", "rainfall", "battery")
ENGINE_KINDS = (*JUDGED_METRICS, "sensor")
PUBLIC_ENGINE_KINDS = tuple(kind for kind in ENGINE_KINDS if kind in PUBLIC_ALERT_KINDS)  # the flood level
event_type = change_type  # the name of a level change (engine events say ``type``)
RELEASE = "~release"  # a horizon entry: a held water level judged as it is (sorts after every metric)

US = 1_000_000  # microseconds in a second: the engine's time keys are integer microseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class EngineEvent:
    """A level change of one kind: raised, escalated, deescalated or cleared."""

    kind: str
    type: str
    level: Level
    at: datetime
    reading: dict


@dataclasses.dataclass
class Judgement:
    """The outcome of judging a batch: the state to store, the events, the levels now."""

    state: dict
    events: list[EngineEvent]
    levels: dict[str, Level]
    ignored: int = 0  # samples older than the horizon: stored, not judged
    quality: dict[datetime, str] = dataclasses.field(default_factory=dict)  # water levels whose mark changed
    overdue_at: datetime | None = None  # when a held doubtful sample is judged as it is, if no sample comes

    @property
    def level(self) -> Level:
        """The station's flood level: the highest public kind (battery is station health)."""
        return max(self.levels[kind] for kind in PUBLIC_ENGINE_KINDS)


def micros(ts: datetime) -> int:
    """Epoch microseconds of a timezone-aware time (the engine's time keys): exact in JSON, cheap to compare."""
    if ts.tzinfo is None:
        raise ValueError("sample timestamps must be timezone-aware (UTC)")
    since = ts - _EPOCH  # whole days and seconds: exact, and cheaper than dividing by a timedelta
    return (since.days * 86_400 + since.seconds) * US + since.microseconds


def from_micros(us: int) -> datetime:
    """The UTC time of epoch microseconds."""
    return _EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """RFC 3339 UTC text of a time in epoch microseconds."""
    return rfc3339(from_micros(us))


def parse_iso_us(text: str) -> int:
    """Epoch microseconds of a reading's RFC 3339 ``ts``."""
    return micros(datetime.fromisoformat(text.replace("Z", "+00:00")))
