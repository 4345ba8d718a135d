"""The figures of an event report (spec section 14): lead time, warning delays, SMS counts.

Pure functions over plain facts the service reads from its tables. All times are aware
UTC datetimes; durations are seconds (floats, one decimal).

Lead time is the question BPBD reports to the regent and to BNPB: how long before the
water came did people know. It is measured from the first resident warning handed to the
provider (``sent_at``) to the moment the station reached AWAS (the measurement time of the
reading behind its first AWAS event), or to its peak when it never did. It splits exactly
into three parts, so a report can say *why* it is what it is::

    lead_time = head_start - reading_delay - dispatch_delay

- ``head_start``: from the measurement of the reading behind the first warning to AWAS
  (what the thresholds gave);
- ``reading_delay``: how late that reading reached the service (a gateway's backlog, or a
  historic flood replayed today: then the lead time cannot be positive);
- ``dispatch_delay``: from its arrival to the SMS handed to the provider (rules, queue, rate).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from alerts.levels import Level
from alerts.times import rfc3339

# Delivery states in the order a report lists them; states not listed here follow.
SMS_STATES = ("delivered", "sent", "undelivered", "failed", "pending", "sending", "unknown")
DELIVERED = "delivered"
# A live reading reaches the service within seconds over GSM and MQTT; one older than this
# on arrival came from a gateway's backlog or a replay, and the lead time says so.
LATE_READING_S = 60.0
WARNING_KINDS = ("warning",)
RESIDENT_WARNING_KINDS = ("warning", "reminder")  # what the period summary counts as "warnings"


@dataclasses.dataclass(frozen=True, slots=True)
class EventFacts:
    """One alert event and the reading that caused it."""

    id: int
    type: str
    level: str
    at: datetime
    reading_ts: datetime | None = None  # measurement time of the causing reading
    received_at: datetime | None = None  # when that reading reached the service
    value: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SmsFacts:
    """One notification of the alert; ``resident`` is None when its subscriber is gone."""

    id: int
    event_id: int | None
    kind: str
    status: str
    sent_at: datetime | None
    resident: bool | None
    subscriber_id: int | None = None
    kecamatan: str | None = None
    desa: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One measured value (chart point, peak)."""

    ts: datetime
    value: float


@dataclasses.dataclass(frozen=True, slots=True)
class LeadTime:
    """The lead time and its parts (see the module docstring); ``seconds`` None when no resident was warned."""

    seconds: float | None
    status: str  # before | after | no_resident_warned | unknown
    reference: str  # awas | peak
    reached_at: datetime | None
    first_warning_at: datetime | None = None
    first_warning_event_id: int | None = None
    warning_reading_at: datetime | None = None
    head_start_s: float | None = None
    reading_delay_s: float | None = None
    dispatch_delay_s: float | None = None
    late_readings: bool = False

    def as_dict(self) -> dict:
        """The JSON form (times in RFC 3339 UTC)."""
        doc = dataclasses.asdict(self)
        for key in ("reached_at", "first_warning_at", "warning_reading_at"):
            doc[key] = rfc3339(doc[key])
        return doc




def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds (one decimal), None when either is unknown."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 1)


# --- counts ----------------------------------------------------------------------------------


def count_by_state(sms: Iterable[SmsFacts]) -> dict[str, int]:
    """SMS counted by delivery state: every state of ``SMS_STATES`` (zeros included), then any other."""
    counts = Counter(s.status for s in sms)
    ordered = {state: counts.pop(state, 0) for state in SMS_STATES}
    ordered.update(sorted(counts.items()))
    return ordered


def _place_key(s: SmsFacts) -> tuple:
    # Each kecamatan's desa in name order, then its residents registered for the whole kecamatan.
    return (s.kecamatan or "", s.desa is None, s.desa or "")


def sms_by_place(sms: Sequence[SmsFacts]) -> list[dict]:
    """Resident SMS per desa (a subscriber of a whole kecamatan has ``desa`` None), with counts by state."""
    groups: dict[tuple, list[SmsFacts]] = {}
    for s in sms:
        if s.resident:
            groups.setdefault(_place_key(s), []).append(s)
    return [{"kecamatan": key[0] or None, "desa": key[2] or None, "messages": len(items),
             "by_state": count_by_state(items)} for key, items in sorted(groups.items())]


def sms_totals(sms: Sequence[SmsFacts]) -> dict:
    """Counts of every SMS of an alert: by state, by kind, by audience, and per desa."""
    audience = Counter(_audience(s) for s in sms)
    return {
        "total": len(sms),
        "by_state": count_by_state(sms),
        "by_kind": dict(sorted(Counter(s.kind for s in sms).items())),
        "by_audience": {key: audience.get(key, 0) for key in ("resident", "staff", "unknown")},
        "places": sms_by_place(sms),
        "staff_by_state": count_by_state(s for s in sms if s.resident is False),
    }


def _audience(s: SmsFacts) -> str:
    return "resident" if s.resident else "staff" if s.resident is False else "unknown"


# --- per event -------------------------------------------------------------------------------


def event_figures(event: EventFacts, sms: Sequence[SmsFacts]) -> dict:
    """``warning_delay_s`` (reading -> first and last SMS handed to the provider) and counts by state."""
    sent = sorted(s.sent_at for s in sms if s.sent_at is not None)
    first = seconds_between(event.reading_ts, sent[0]) if sent else None
    last = seconds_between(event.reading_ts, sent[-1]) if sent else None
    return {
        "warning_delay_s": {"first": first, "last": last},
        "reading_delay_s": seconds_between(event.reading_ts, event.received_at),
        "sms_total": len(sms),
        "sms": count_by_state(sms),
    }


# --- lead time -------------------------------------------------------------------------------


def reached(events: Sequence[EventFacts], peak_level: str, peak: Point | None) -> tuple[str, datetime | None]:
    """The moment the lead time runs to: ``("awas", at)`` or ``("peak", at)``.

    AWAS: the measurement time of the reading behind the first event at AWAS. Otherwise the
    peak: the highest value of the episode (``peak``: the water level, or the rolling rain
    sum that carried the alert), else the first event at the episode's peak level.
    """
    entered = [e for e in events if e.type in ("raised", "escalated")]
    awas = next((e for e in entered if e.level == Level.AWAS.label), None)
    if awas is not None:
        return "awas", awas.reading_ts or awas.at
    if peak is not None:
        return "peak", peak.ts
    at_peak = next((e for e in entered if e.level == peak_level), None)
    return "peak", None if at_peak is None else at_peak.reading_ts or at_peak.at


def first_resident_warning(sms: Iterable[SmsFacts]) -> SmsFacts | None:
    """The first resident warning handed to the provider (smallest ``sent_at``), or None."""
    sent = [s for s in sms if s.resident and s.kind in WARNING_KINDS and s.sent_at is not None]
    return min(sent, key=lambda s: (s.sent_at, s.id)) if sent else None


def lead_time(events: Sequence[EventFacts], sms: Sequence[SmsFacts], peak_level: str, peak: Point | None) -> LeadTime:
    """The lead time residents had, with its parts (see the module docstring)."""
    reference, reached_at = reached(events, peak_level, peak)
    first = first_resident_warning(sms)
    if first is None:
        return LeadTime(None, "no_resident_warned", reference, reached_at)
    if reached_at is None:  # an alert without level events: nothing to measure against
        return LeadTime(None, "unknown", reference, None, first_warning_at=first.sent_at,
                        first_warning_event_id=first.event_id)
    seconds = seconds_between(first.sent_at, reached_at)
    cause = next((e for e in events if e.id == first.event_id), None)
    reading_at = cause.reading_ts or cause.at if cause else None
    reading_delay = seconds_between(reading_at, cause.received_at) if cause else None
    dispatch = seconds_between(cause.received_at, first.sent_at) if cause else None
    return LeadTime(
        seconds=seconds, status="before" if seconds >= 0 else "after", reference=reference, reached_at=reached_at,
        first_warning_at=first.sent_at, first_warning_event_id=first.event_id, warning_reading_at=reading_at,
        head_start_s=seconds_between(reading_at, reached_at), reading_delay_s=reading_delay,
        dispatch_delay_s=dispatch, late_readings=reading_delay is not None and reading_delay > LATE_READING_S,
    )


def chart_metric(kind: str, metrics: Sequence[str]) -> str | None:
    """The metric an alert's chart shows: its own, else the station's river or rain metric."""
    if kind in ("water_level", "rainfall", "battery"):
        return kind
    if "water_level" in metrics:
        return "water_level"
    return "rainfall" if "rainfall" in metrics or "rain_tips" in metrics else None


def rain_window(sums: Mapping[str, float], thresholds: Mapping[str, Mapping[str, float]], level: str) -> str:
    """The rolling window that carried a rainfall alert to ``level``: the highest sum over its threshold."""
    best, ratio = None, -1.0
    for window, marks in thresholds.items():
        threshold = marks.get(level)
        if threshold and window in sums and sums[window] / threshold > ratio:
            best, ratio = window, sums[window] / threshold
    return best or ("1h" if "1h" in thresholds or not thresholds else next(iter(thresholds)))


def peak_point(points: Iterable[Point]) -> Point | None:
    """The highest value (the first of equals), or None without points."""
    best = None
    for point in points:
        if best is None or point.value > best.value:
            best = point
    return best


# --- the period summary ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Episode:
    """One alert (an episode) in a period summary."""

    alert_id: int
    station_id: str
    kind: str
    opened_at: datetime
    closed_at: datetime | None
    peak_level: str
    peak: Point | None
    warnings_sent: int
    warnings_delivered: int
    residents_warned: int
    lead: LeadTime


def resident_warning_counts(sms: Sequence[SmsFacts]) -> tuple[int, int, int]:
    """(resident warnings handed to the provider, of those delivered, distinct residents warned)."""
    warned = [s for s in sms if s.resident and s.kind in RESIDENT_WARNING_KINDS and s.sent_at is not None]
    delivered = sum(1 for s in warned if s.status == DELIVERED)
    return len(warned), delivered, len({s.subscriber_id for s in warned})


def median(values: Iterable[float]) -> float | None:
    """The median (mean of the middle two for an even count), None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round((ordered[middle - 1] + ordered[middle]) / 2, 1)


def period_totals(episodes: Sequence[Episode]) -> dict:
    """The regency's figures over a period: episodes, peak levels, warnings, median lead time."""
    by_level = Counter(e.peak_level for e in episodes)
    leads = [e.lead.seconds for e in episodes if e.lead.seconds is not None]
    return {
        "episodes": len(episodes),
        "by_peak_level": {level.label: by_level.get(level.label, 0) for level in reversed(Level) if level},
        "stations": len({e.station_id for e in episodes}),
        "warnings_sent": sum(e.warnings_sent for e in episodes),
        "warnings_delivered": sum(e.warnings_delivered for e in episodes),
        "residents_warned": sum(e.residents_warned for e in episodes),
        "median_lead_time_s": median(leads),
        "lead_times": len(leads),
        "warned_before": sum(1 for e in episodes if e.lead.status == "before"),
        "warned_after": sum(1 for e in episodes if e.lead.status == "after"),
        "no_resident_warned": sum(1 for e in episodes if e.lead.status == "no_resident_warned"),
        "late_readings": sum(1 for e in episodes if e.lead.late_readings),
    }


def station_peaks(episodes: Sequence[Episode]) -> list[dict]:
    """Per station: its episodes, highest level and highest value in the period."""
    out: dict[str, dict] = {}
    for e in episodes:
        row = out.setdefault(e.station_id, {"station_id": e.station_id, "episodes": 0, "peak_level": "normal",
                                            "peak_value": None, "peak_at": None})
        row["episodes"] += 1
        if Level.parse(e.peak_level) > Level.parse(row["peak_level"]):
            row["peak_level"] = e.peak_level
        if e.peak is not None and (row["peak_value"] is None or e.peak.value > row["peak_value"]):
            row["peak_value"], row["peak_at"] = e.peak.value, e.peak.ts
    return sorted(out.values(), key=lambda r: (-Level.parse(r["peak_level"]), r["station_id"]))


def group_by_event(sms: Iterable[SmsFacts]) -> Mapping[int | None, list[SmsFacts]]:
    """SMS grouped by the event they tell about."""
    groups: dict[int | None, list[SmsFacts]] = {}
    for s in sms:
        groups.setdefault(s.event_id, []).append(s)
    return groups
