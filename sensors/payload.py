"""Parse a gateway's reading payload (spec section 1) into samples and rejections.

Pure: bytes and a station description in, ``Sample`` and ``Rejection`` values out.
Nothing here raises on bad input; every problem becomes a ``Rejection`` with one of
the reasons of spec section 1, so the ingest loop never stops on a bad payload.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from alerts.model import METRICS, Rejection, Sample

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SAMPLES = 1000
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_AGE = timedelta(days=7)
RAIN_METRICS = ("rainfall", "rain_tips")
_JUDGED = frozenset(METRICS) - {"rain_tips"}  # the metrics whose sample is the value as sent, in its range


@dataclasses.dataclass(frozen=True)
class StationInfo:
    """What the parser needs to know about a station."""

    id: str
    metrics: tuple[str, ...]
    plausible: Mapping[str, tuple[float, float]]


@dataclasses.dataclass
class Parsed:
    """The outcome of parsing one payload."""

    samples: list[Sample] = dataclasses.field(default_factory=list)
    rejections: list[Rejection] = dataclasses.field(default_factory=list)
    seqs: list[int] = dataclasses.field(default_factory=list)
    indexes: list[int] = dataclasses.field(default_factory=list)  # of each sample's item in the payload


def parse_payload(payload: bytes, station: StationInfo | None, now: datetime) -> Parsed:
    """Turn one payload into samples of ``station`` and the rejections of what could not be kept."""
    result = Parsed([], [], [], [])
    whole = _check_whole(payload, station)
    if isinstance(whole, Rejection):
        result.rejections.append(whole)
        return result
    for index, item in enumerate(whole):
        _parse_item(item, station, now, result, index)
    return result


def _check_whole(payload: bytes, station: StationInfo | None) -> list | Rejection:
    """Reject what is wrong with the payload as a whole; return its items otherwise."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("too_large", f"{len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
        try:  # JSONDecoder.decode in one pass when the document fills the whole text
            document, end = _DECODER.raw_decode(text)
        except ValueError:  # leading whitespace, or not JSON: decode() skips the one and words the error of the other
            end = -1
        if end != len(text):  # and trailing whitespace, or extra data
            document = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Rejection("malformed_json", _short(str(exc)))
    if type(document) is dict:  # the usual payload: one sample object
        items = [document]
    elif isinstance(document, list):
        if len(document) > MAX_SAMPLES:
            return Rejection("too_many_samples", f"{len(document)} samples; the limit is {MAX_SAMPLES}")
        if not document:
            return Rejection("not_an_object", "an empty array holds no sample")
        items = document
    else:
        return Rejection("not_an_object", f"expected an object or an array, got {type(document).__name__}")
    if station is None:
        return Rejection("unknown_station", "no station with this id is registered")
    return items


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON; keep parsing so the sample is rejected as not_a_number.
    return math.nan


# One decoder for every payload: building one per call (json.loads with parse_constant) cost
# more than decoding a small payload.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_item(item, station: StationInfo, now: datetime, result: Parsed, index: int) -> None:
    """Parse the sample object at ``index`` of the payload into ``result``."""
    if not isinstance(item, dict):
        _reject(result, index, "not_an_object", f"a sample must be an object, got {type(item).__name__}")
        return
    ts = parse_timestamp(item.get("ts"))
    if isinstance(ts, Rejection):
        _reject(result, index, ts.reason, ts.detail)
        return
    if ts > now + FUTURE_TOLERANCE:
        raw_ts = _raw_ts(item)
        _reject(result, index, "ts_in_future", f"{raw_ts} is ahead of the service clock", ts=raw_ts)
        return
    if ts < now - MAX_AGE:
        raw_ts = _raw_ts(item)
        _reject(result, index, "ts_too_old", f"{raw_ts} is older than 7 days", ts=raw_ts)
        return
    seq = item.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool):
        result.seqs.append(seq)
    values = item.get("values")
    if not isinstance(values, dict) or not values:
        _reject(result, index, "no_values", "'values' must be an object with at least one metric", ts=_raw_ts(item))
        return
    configured, plausible, station_id = station.metrics, station.plausible, station.id
    for metric, value in values.items():  # a JSON object's keys are always str
        if type(value) is float and metric in configured and metric in _JUDGED and math.isfinite(value):
            # The common case inline: a configured metric (not a tip counter) with a finite float.
            bounds = plausible.get(metric)
            if bounds is None or bounds[0] <= value <= bounds[1]:
                result.samples.append(_sample(station_id, metric, ts, value))
                result.indexes.append(index)
                continue
        outcome = _parse_value(station, metric, value, ts, item)
        if isinstance(outcome, Sample):
            result.samples.append(outcome)
            result.indexes.append(index)
        else:
            result.rejections.append(dataclasses.replace(outcome, index=index))


def _sample_maker():
    """``Sample`` without its generated ``__init__``: the same object, its slots set through their descriptors.

    A frozen dataclass sets each field through ``object.__setattr__``: that was a sixth of the parse
    of a one-value payload. Should ``Sample`` ever check its fields (``__post_init__``), this is ``Sample``.
    """
    names = tuple(field.name for field in dataclasses.fields(Sample))
    if names != ("station_id", "metric", "ts", "value") or "__post_init__" in dir(Sample):
        return Sample
    new, (set_station, set_metric, set_ts, set_value) = object.__new__, (Sample.__dict__[n].__set__ for n in names)

    def sample(station_id: str, metric: str, ts: datetime, value: float) -> Sample:
        made = new(Sample)
        set_station(made, station_id)
        set_metric(made, metric)
        set_ts(made, ts)
        set_value(made, value)
        return made

    return sample


_sample = _sample_maker()


def _reject(result: Parsed, index: int, reason: str, detail: str, **where) -> None:
    result.rejections.append(Rejection(reason, detail, index=index, **where))


def _raw_ts(item: dict) -> str:
    # The sample's ts as sent, for a rejection's text (built only when something is rejected).
    return _short(str(item.get("ts")), 64)


def _parse_value(station: StationInfo, metric: str, value, ts: datetime, item: dict) -> Sample | Rejection:
    """Check one metric value against the station's configuration and plausible range (the common case
    of a configured metric with a finite float in range is taken in ``_parse_item``)."""
    raw_ts = _raw_ts(item)
    name = _short(metric, 64)
    if metric not in METRICS:
        return Rejection("unknown_metric", f"{name!r} is not one of {', '.join(METRICS)}", metric=name, ts=raw_ts)
    if metric not in station.metrics:
        # A value the station does not measure is never judged: a water_level sent to a rain
        # gauge must not raise a flood warning (spec section 9).
        return Rejection("metric_not_configured", _not_configured(station, metric), metric=metric, ts=raw_ts)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return Rejection("not_a_number", f"{_short(repr(value), 64)} is not a finite number", metric=metric, ts=raw_ts)
    bounds = station.plausible.get("rainfall" if metric == "rain_tips" else metric)
    if metric == "rain_tips":
        if value < 0 or value != int(value):
            return Rejection("out_of_range", f"a tip counter must be a whole number >= 0, got {value}", metric=metric, ts=raw_ts)
    elif bounds is not None and not bounds[0] <= value <= bounds[1]:
        return Rejection("out_of_range", f"{value} is outside [{bounds[0]}, {bounds[1]}]", metric=metric, ts=raw_ts)
    return Sample(station.id, metric, ts, float(value))


def _not_configured(station: StationInfo, metric: str) -> str:
    if metric in RAIN_METRICS:
        configured = next((m for m in RAIN_METRICS if m in station.metrics), None)
        if configured:
            return f"this station is configured for {configured}"
    return f"{station.id} does not measure {metric} (its metrics: {', '.join(station.metrics) or 'none'})"


_TIMES: dict[str, datetime] = {}  # RFC 3339 text -> its UTC time: a network's stations report at the same minutes
_TIMES_KEPT = 4096


def parse_timestamp(raw) -> datetime | Rejection:
    """Parse RFC 3339 with an offset, or epoch seconds, into an aware UTC datetime."""
    if type(raw) is str:
        known = _TIMES.get(raw)
        if known is not None:
            return known
    if isinstance(raw, bool) or raw is None:
        return Rejection("bad_timestamp", "'ts' is required: RFC 3339 with an offset, or epoch seconds")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            return Rejection("bad_timestamp", "'ts' is not a finite number")
        try:
            return datetime.fromtimestamp(raw, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return Rejection("bad_timestamp", f"{_short(repr(raw), 64)} is not a usable epoch time")
    if not isinstance(raw, str):
        return Rejection("bad_timestamp", f"'ts' must be a string or a number, got {type(raw).__name__}")
    text = raw.strip()
    if len(text) < 20 or text[10] not in "Tt ":
        return Rejection("bad_timestamp", f"{_short(raw, 64)!r} is not RFC 3339 (e.g. 2026-11-30T06:05:00Z)")
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError:
        return Rejection("bad_timestamp", f"{_short(raw, 64)!r} is not RFC 3339 (e.g. 2026-11-30T06:05:00Z)")
    if parsed.tzinfo is None:
        return Rejection("bad_timestamp", f"{_short(raw, 64)!r} has no UTC offset (add Z or +08:00)")
    if len(_TIMES) >= _TIMES_KEPT:
        _TIMES.clear()
    utc = _TIMES[raw] = parsed.astimezone(timezone.utc)
    return utc


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
