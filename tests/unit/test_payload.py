"""The payload parser: every rejection reason of spec section 1, and arbitrary input never crashes it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.payload import MAX_PAYLOAD_BYTES, StationInfo, parse_payload, parse_timestamp

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
GAUGE = StationInfo("PKR-LASKAP", ("water_level", "battery", "signal"), {"water_level": (0.0, 8.0), "battery": (0.0, 16.0)})
RAIN = StationInfo("ARR-MALILI", ("rain_tips", "battery"), {"rainfall": (0.0, 120.0)})


def payload(**fields) -> bytes:
    """A JSON payload with defaults for the fields not given."""
    body = {"ts": "2026-11-30T05:55:00Z", "values": {"water_level": 2.43}}
    body.update(fields)
    return json.dumps(body).encode()


def reasons(result) -> list[str]:
    return [r.reason for r in result.rejections]


def test_accepts_one_sample_with_every_known_metric():
    result = parse_payload(payload(seq=7, values={"water_level": 2.43, "battery": 12.6, "signal": -87}), GAUGE, NOW)
    assert sorted(s.metric for s in result.samples) == ["battery", "signal", "water_level"]
    assert result.samples[0].ts == datetime(2026, 11, 30, 5, 55, tzinfo=timezone.utc)
    assert result.rejections == [] and result.seqs == [7]


def test_accepts_an_array_backlog_and_epoch_seconds():
    items = [{"ts": NOW.timestamp() - 600 * i, "values": {"water_level": 1.0 + i / 10}} for i in range(10)]
    result = parse_payload(json.dumps(items).encode(), GAUGE, NOW)
    assert len(result.samples) == 10 and not result.rejections


def test_converts_offsets_to_utc():
    result = parse_payload(payload(ts="2026-11-30T13:55:00+08:00"), GAUGE, NOW)
    assert result.samples[0].ts == datetime(2026, 11, 30, 5, 55, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "raw, station, reason",
    [
        (b"{not json", GAUGE, "malformed_json"),
        (b"\xff\xfe\x00", GAUGE, "malformed_json"),
        (b"42", GAUGE, "not_an_object"),
        (b'"text"', GAUGE, "not_an_object"),
        (b"[1, 2]", GAUGE, "not_an_object"),
        (payload(), None, "unknown_station"),
        (payload(ts="yesterday"), GAUGE, "bad_timestamp"),
        (payload(ts="2026-11-30T05:55:00"), GAUGE, "bad_timestamp"),
        (payload(ts=None), GAUGE, "bad_timestamp"),
        (payload(ts=True), GAUGE, "bad_timestamp"),
        (payload(ts="2026-11-30T06:06:00Z"), GAUGE, "ts_in_future"),
        (payload(ts="2026-11-22T05:59:00Z"), GAUGE, "ts_too_old"),
        (payload(values={"temperature": 30}), GAUGE, "unknown_metric"),
        (payload(values={"water_level": "2.4"}), GAUGE, "not_a_number"),
        (payload(values={"water_level": None}), GAUGE, "not_a_number"),
        (payload(values={"water_level": True}), GAUGE, "not_a_number"),
        (b'{"ts": "2026-11-30T05:55:00Z", "values": {"water_level": NaN}}', GAUGE, "not_a_number"),
        (b'{"ts": "2026-11-30T05:55:00Z", "values": {"water_level": Infinity}}', GAUGE, "not_a_number"),
        (payload(values={"water_level": 9.5}), GAUGE, "out_of_range"),
        (payload(values={"water_level": -0.5}), GAUGE, "out_of_range"),
        (payload(values={"rain_tips": -3}), RAIN, "out_of_range"),
        (payload(values={"rainfall": 2.0}), RAIN, "metric_not_configured"),
        (payload(values={}), GAUGE, "no_values"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), GAUGE, "too_large"),
        (json.dumps([{"ts": "2026-11-30T05:55:00Z", "values": {"water_level": 1}}] * 1001).encode(), GAUGE, "too_many_samples"),
    ],
)
def test_rejects_with_the_reason_of_the_spec(raw, station, reason):
    assert reason in reasons(parse_payload(raw, station, NOW))


def test_keeps_the_known_metrics_beside_an_unknown_one():
    result = parse_payload(payload(values={"water_level": 2.0, "humidity": 80}), GAUGE, NOW)
    assert [s.metric for s in result.samples] == ["water_level"]
    assert reasons(result) == ["unknown_metric"]


def test_a_bad_sample_in_a_batch_does_not_reject_the_others():
    items = [{"ts": "2026-11-30T05:50:00Z", "values": {"water_level": 2.0}}, {"ts": "bad", "values": {"water_level": 2.1}}, 5]
    result = parse_payload(json.dumps(items).encode(), GAUGE, NOW)
    assert len(result.samples) == 1
    assert sorted(reasons(result)) == ["bad_timestamp", "not_an_object"]


def test_timestamp_forms():
    assert parse_timestamp(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert parse_timestamp("2026-11-30T06:05:00.250Z").microsecond == 250000
    assert parse_timestamp("2026-11-30 06:05:00+00:00") == datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)
    assert parse_timestamp(float("inf")).reason == "bad_timestamp"
    assert parse_timestamp(1e300).reason == "bad_timestamp"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_parser(raw):
    result = parse_payload(raw, GAUGE, NOW)
    assert result.samples or result.rejections


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes_the_parser(document):
    raw = json.dumps(document).encode()
    result = parse_payload(raw, GAUGE, NOW)
    for sample in result.samples:
        assert 0.0 <= sample.value <= 16.0 or sample.metric == "signal"


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"ts": st.one_of(st.integers(-10**12, 10**12), st.floats(), st.text(max_size=30), st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat())),
         "values": st.dictionaries(st.sampled_from(["water_level", "battery", "signal", "rainfall", "x"]), json_values, max_size=4)}
    )
)
def test_every_sample_is_either_kept_or_rejected_with_a_reason(document):
    result = parse_payload(json.dumps(document).encode(), GAUGE, NOW)
    for sample in result.samples:
        assert NOW - timedelta(days=7) <= sample.ts <= NOW + timedelta(minutes=5)
    assert all(r.reason for r in result.rejections)
