"""The one wire format for times (alerts/times.py)."""

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from alerts.times import rfc3339

WITA = timezone(timedelta(hours=8))


def test_utc_with_z_and_fractions_only_when_present():
    assert rfc3339(datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)) == "2026-11-30T06:05:00Z"
    assert rfc3339(datetime(2026, 11, 30, 6, 5, 0, 250000, tzinfo=timezone.utc)) == "2026-11-30T06:05:00.250000Z"
    assert rfc3339(datetime(2026, 11, 30, 14, 5, 0, 250000, tzinfo=WITA), whole_seconds=True) == "2026-11-30T06:05:00Z"
    assert rfc3339(None) is None


# Bounded: datetime.min at +08:00 has no UTC instant (an OverflowError, not a formatting question).
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(WITA)))
def test_reads_back_as_the_same_instant(moment):
    text = rfc3339(moment)
    assert text.endswith("Z")
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == moment
