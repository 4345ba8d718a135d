"""Event reports (spec section 14): what the tables say about one alert, for ``alerts.report``.

``alert_report`` reads an alert, its station, events, SMS and the readings of the episode
and answers the report document (JSON) plus the chart series the printable page draws.
Phone numbers are masked here, for every caller. The figures themselves (lead time,
delays, counts, chart geometry) are computed by the pure core, ``alerts.report`` and
``alerts.chart``; the period summary is ``service.report_summary``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import report as core
from alerts.chart import rolling_sums
from alerts.times import rfc3339
from alerts.levels import WARNING_LEVELS
from alerts.rules import RAIN_WINDOWS, Rules
from service.alert_views import alert_to_dict, event_to_dict
from service.db import schema
from service.phones import mask
from service.station_rules import station_rules
from service.subscribers import area_matches

UNITS = {"water_level": "m", "rainfall": "mm", "battery": "V", "signal": "dBm"}
MAX_FAILURES = 100  # failed SMS listed one by one (masked); the counts hold them all
FAILED_STATES = ("failed", "undelivered")
MAX_MARGIN = timedelta(hours=6)  # the chart shows at most this much before and after the episode


@dataclasses.dataclass(frozen=True)
class Series:
    """What the chart draws: points of one metric in a window, and the thresholds {level: value}."""

    metric: str | None
    unit: str
    start: datetime
    end: datetime
    points: list[core.Point]
    thresholds: dict[str, float]
    window: str | None = None  # rainfall: the rolling window charted


def parse_ts(text) -> datetime | None:
    """An RFC 3339 string of a stored reading, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


# --- reading the tables ------------------------------------------------------------------------


def station_doc(conn: Connection, station_id: str) -> dict:
    """The station's row as a dict, or a stub when it was deleted since."""
    row = conn.execute(sa.select(schema.stations).where(schema.stations.c.id == station_id)).first()
    return dict(row._mapping) if row is not None else {"id": station_id, "name": station_id, "areas": [],
                                                       "metrics": [], "rules": {}}


def event_rows(conn: Connection, alert_ids: Sequence[int]) -> list:
    """The events of ``alert_ids`` in the order they were recorded."""
    e = schema.alert_events
    return conn.execute(sa.select(e).where(e.c.alert_id.in_(list(alert_ids))).order_by(e.c.id)).all()


def arrival_times(conn: Connection, station_id: str, events: Sequence) -> dict[tuple[str, datetime], datetime]:
    """When each event's reading reached the service: {(metric, ts): received_at}."""
    wanted: dict[str, set[datetime]] = {}
    for event in events:
        reading = event.reading or {}
        ts = parse_ts(reading.get("ts"))
        if reading.get("metric") and ts is not None:
            wanted.setdefault(reading["metric"], set()).add(ts)
    r = schema.readings
    found = {}
    for metric, stamps in wanted.items():
        rows = conn.execute(sa.select(r.c.ts, r.c.received_at).where(
            r.c.station_id == station_id, r.c.metric == metric, r.c.ts.in_(sorted(stamps)))).all()
        found.update({(metric, row.ts): row.received_at for row in rows})
    return found


def event_facts(events: Sequence, arrivals: Mapping) -> list[core.EventFacts]:
    """Events as the core sees them, with the measurement and arrival time of their reading."""
    out = []
    for event in events:
        reading = event.reading or {}
        ts = parse_ts(reading.get("ts"))
        value = reading.get("value")
        out.append(core.EventFacts(
            id=event.id, type=event.type, level=event.level, at=event.at, reading_ts=ts,
            received_at=arrivals.get((reading.get("metric"), ts)),
            value=float(value) if isinstance(value, (int, float)) else None))
    return out


def notification_rows(conn: Connection, alert_ids: Sequence[int]) -> list:
    """Every SMS of ``alert_ids`` with its subscriber's role and areas (None when the subscriber is gone)."""
    n, sub = schema.notifications, schema.subscribers
    return conn.execute(
        sa.select(n.c.id, n.c.alert_id, n.c.event_id, n.c.subscriber_id, n.c.kind, n.c.status, n.c.sent_at,
                  n.c.phone, n.c.error_code, sub.c.role, sub.c.areas)
        .select_from(n.outerjoin(sub, sub.c.id == n.c.subscriber_id))
        .where(n.c.alert_id.in_(list(alert_ids))).order_by(n.c.id)
    ).all()


def place_of(subscriber_areas: Sequence[Mapping] | None, station_areas: Sequence[Mapping]) -> tuple[str | None, str | None]:
    """The subscriber's area that made them an audience of the station: (kecamatan, desa or None)."""
    for area in subscriber_areas or []:
        if any(area_matches(area, station_area) for station_area in station_areas or []):
            return area.get("kecamatan"), area.get("desa") or None
    return None, None


def sms_facts(rows: Sequence, station_areas: Sequence[Mapping]) -> list[core.SmsFacts]:
    """Notifications as the core sees them (residents placed in the desa that matched)."""
    out = []
    for row in rows:
        resident = None if row.role is None else row.role == "resident"
        kecamatan, desa = place_of(row.areas, station_areas) if resident else (None, None)
        out.append(core.SmsFacts(id=row.id, event_id=row.event_id, kind=row.kind, status=row.status,
                                 sent_at=row.sent_at, resident=resident, subscriber_id=row.subscriber_id,
                                 kecamatan=kecamatan, desa=desa))
    return out


def readings(conn: Connection, station_id: str, metric: str, start: datetime, end: datetime) -> list[core.Point]:
    """The stored values of one metric from ``start`` to ``end``, in time order; spikes left out (spec 17).

    A spike was refuted by the next sample and never judged: it is no part of the river's line
    nor of its peak. The report lists it apart (``quality_marks``).
    """
    r = schema.readings
    rows = conn.execute(sa.select(r.c.ts, r.c.value).where(
        r.c.station_id == station_id, r.c.metric == metric, r.c.ts >= start, r.c.ts <= end,
        r.c.quality != "spike").order_by(r.c.ts)).all()
    return [core.Point(row.ts, row.value) for row in rows]


def quality_marks(conn: Connection, station_id: str, start: datetime, end: datetime) -> list[dict]:
    """The station's water levels marked spike or doubtful from ``start`` to ``end``, in time order."""
    r = schema.readings
    rows = conn.execute(sa.select(r.c.ts, r.c.value, r.c.quality).where(
        r.c.station_id == station_id, r.c.metric == "water_level", r.c.ts >= start, r.c.ts <= end,
        r.c.quality != "good").order_by(r.c.ts)).all()
    return [{"ts": rfc3339(row.ts), "value": row.value, "quality": row.quality} for row in rows]


# --- the chart series ----------------------------------------------------------------------------


def episode_window(opened_at: datetime, closed_at: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The chart's time span: the episode with a margin either side (15 %, 1 min to 6 h), never past now."""
    until = closed_at or now
    margin = min(max((until - opened_at) * 0.15, timedelta(minutes=1)), MAX_MARGIN)
    return opened_at - margin, min(until + margin, max(now, until))


def widened(conn: Connection, station_id: str, metric: str, start: datetime, end: datetime,
            now: datetime) -> tuple[datetime, datetime]:
    """The window stretched to the reading just before it and just after it (within ``MAX_MARGIN``),
    so the line starts below the threshold it crosses and ends where the river settled."""
    r = schema.readings
    base = sa.select(r.c.ts).where(r.c.station_id == station_id, r.c.metric == metric)
    before = conn.execute(base.where(r.c.ts < start, r.c.ts >= start - MAX_MARGIN)
                          .order_by(r.c.ts.desc()).limit(1)).scalar()
    after = conn.execute(base.where(r.c.ts > end, r.c.ts <= min(end + MAX_MARGIN, now))
                         .order_by(r.c.ts).limit(1)).scalar()
    return before or start, after or end


def level_thresholds(marks: Mapping[str, float | None]) -> dict[str, float]:
    """{level: value} of the warning levels that are in use."""
    return {level.label: float(marks[level.label]) for level in WARNING_LEVELS if marks.get(level.label) is not None}


def water_thresholds(rules: Rules) -> dict[str, float]:
    rule = rules.water_level
    return {} if rule is None else level_thresholds({lv.label: rule.threshold(lv) for lv in WARNING_LEVELS})


def rain_thresholds(rules: Rules) -> dict[str, dict[str, float]]:
    """{window: {level: mm}} of the station's rainfall rules."""
    if rules.rainfall is None:
        return {}
    return {w.name: level_thresholds({lv.label: w.threshold(lv) for lv in WARNING_LEVELS})
            for w in rules.rainfall.windows}


def series(conn: Connection, alert, station: Mapping, rules: Rules, raw_events: Sequence, now: datetime) -> Series:
    """The chart series of an alert: its metric over the episode window, against its thresholds."""
    start, end = episode_window(alert.opened_at, alert.closed_at, now)
    metric = core.chart_metric(alert.kind, station.get("metrics") or [])
    if metric == "rainfall":
        windows = rain_thresholds(rules)
        sums = next(((e.reading or {}).get("sums") for e in raw_events
                     if e.level == alert.peak_level and (e.reading or {}).get("sums")), None)
        window = core.rain_window(sums or {}, windows, alert.peak_level)
        size = RAIN_WINDOWS.get(window, 3600)
        increments = readings(conn, station["id"], "rainfall", start - timedelta(seconds=size), end)
        points = [p for p in rolling_sums(increments, size) if p.ts >= start]
        return Series(metric, "mm", start, end, points, windows.get(window, {}), window)
    if metric is None:
        return Series(None, "", start, end, [], {})
    thresholds = water_thresholds(rules) if metric == "water_level" else {}
    if metric == "battery" and rules.battery is not None:
        thresholds = {"waspada": rules.battery.low}
    start, end = widened(conn, station["id"], metric, start, end, now)
    return Series(metric, UNITS.get(metric, ""), start, end, readings(conn, station["id"], metric, start, end),
                  thresholds)


def episode_peak(chart: Series, alert, now: datetime) -> core.Point | None:
    """The highest charted value inside the episode itself (not its margins)."""
    until = alert.closed_at or now
    return core.peak_point(p for p in chart.points if alert.opened_at <= p.ts <= until)


# --- the report document ---------------------------------------------------------------------


def _event_doc(event, facts: core.EventFacts, sms: Sequence[core.SmsFacts]) -> dict:
    doc = event_to_dict(event)
    doc["reading_received_at"] = rfc3339(facts.received_at)
    doc.update(core.event_figures(facts, sms))
    return doc


def failures(rows: Sequence, facts: Sequence[core.SmsFacts]) -> list[dict]:
    """Failed and undelivered SMS one by one, phone numbers masked (for every role)."""
    by_id = {f.id: f for f in facts}
    out = []
    for row in rows:
        if row.status in FAILED_STATES and len(out) < MAX_FAILURES:
            f = by_id[row.id]
            out.append({"id": row.id, "event_id": row.event_id, "phone": mask(row.phone), "status": row.status,
                        "error_code": row.error_code, "kecamatan": f.kecamatan, "desa": f.desa})
    return out


def station_part(station: Mapping, rules: Rules) -> dict:
    """The station as the report shows it: where it is, what it warns and its thresholds."""
    keys = ("id", "name", "river", "kecamatan", "desa", "lat", "lon", "areas", "metrics")
    doc = {key: station.get(key) for key in keys}
    metrics = station.get("metrics") or []
    doc["thresholds"] = {}
    if "water_level" in metrics:
        doc["thresholds"]["water_level"] = water_thresholds(rules)
    if "rainfall" in metrics or "rain_tips" in metrics:
        doc["thresholds"]["rainfall"] = rain_thresholds(rules)
    doc["notify_from"] = rules.notify_from.label
    return doc


@dataclasses.dataclass(frozen=True)
class EpisodeData:
    """Everything a report says about one alert, read and computed."""

    alert: object
    station: dict
    rules: Rules
    raw_events: list
    events: list[core.EventFacts]
    rows: list
    sms: list[core.SmsFacts]
    chart: Series
    peak: core.Point | None
    lead: core.LeadTime


def load_episode(conn: Connection, alert, station: dict, now: datetime, *, raw_events: Sequence | None = None,
                 rows: Sequence | None = None) -> EpisodeData:
    """Read (unless given) and compute the facts of one alert: events, SMS, chart series, peak, lead time."""
    rules = station_rules(station)
    raw_events = list(event_rows(conn, [alert.id]) if raw_events is None else raw_events)
    events = event_facts(raw_events, arrival_times(conn, alert.station_id, raw_events))
    rows = list(notification_rows(conn, [alert.id]) if rows is None else rows)
    sms = sms_facts(rows, station.get("areas") or [])
    chart = series(conn, alert, station, rules, raw_events, now)
    peak = episode_peak(chart, alert, now)
    lead = core.lead_time(events, sms, alert.peak_level, peak)
    return EpisodeData(alert, station, rules, raw_events, events, rows, sms, chart, peak, lead)


def alert_report(conn: Connection, alert_id: int, now: datetime) -> tuple[dict, Series]:
    """The report of one alert (JSON document) and its chart series; LookupError when there is no such alert."""
    alert = conn.execute(sa.select(schema.alerts).where(schema.alerts.c.id == alert_id)).first()
    if alert is None:
        raise LookupError(f"no alert {alert_id}")
    data = load_episode(conn, alert, station_doc(conn, alert.station_id), now)
    by_event = core.group_by_event(data.sms)
    chart, peak = data.chart, data.peak
    doc = {
        "alert": alert_to_dict(alert),
        "station": station_part(data.station, data.rules),
        "events": [_event_doc(raw, facts, by_event.get(raw.id, [])) for raw, facts in zip(data.raw_events, data.events)],
        "sms": {**core.sms_totals(data.sms), "failures": failures(data.rows, data.sms)},
        "lead_time_s": data.lead.seconds,
        "lead_time": data.lead.as_dict(),
        "series": {"metric": chart.metric, "unit": chart.unit, "window": chart.window, "from": rfc3339(chart.start),
                   "to": rfc3339(chart.end), "thresholds": chart.thresholds, "count": len(chart.points),
                   "peak": None if peak is None else {"value": peak.value, "ts": rfc3339(peak.ts)}},
        # Water levels the quality check doubted within the chart's window (spikes are not in the series).
        "spikes": quality_marks(conn, alert.station_id, chart.start, chart.end)
        if "water_level" in (data.station.get("metrics") or []) else [],
        "generated_at": rfc3339(now),
    }
    return doc, chart
