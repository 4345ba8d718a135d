"""The period summary for the whole regency (``GET /api/v1/reports?from=&to=``), JSON and CSV.

What BPBD pastes into its monthly report: the episodes (alerts of the public kinds opened
in the period; drills and simulations left out), their peak levels and values, the
warnings residents were sent and got, and the median lead time. Each episode is computed
exactly as its own event report (``service.reports.load_episode``), so the two never
disagree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime, tzinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import report as core
from alerts.model import GAUGE_ALERT_KINDS
from alerts.times import rfc3339
from service import reports
from service.db import schema

MAX_EPISODES = 5000  # a year of a bad season is a few hundred; past this the answer says it is cut
CSV_COLUMNS = (
    "alert_id", "station_id", "station", "river", "kecamatan", "kind", "opened_{tz}", "closed_{tz}",
    "peak_level", "peak_value", "unit", "warnings_sent", "warnings_delivered", "residents_warned",
    "lead_time_min", "lead_time_s", "lead_time_status", "late_readings",
)
# A cell starting with one of these is a formula to a spreadsheet: names are quoted so it stays text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def episode_alerts(conn: Connection, start: datetime, end: datetime) -> list:
    """Alerts of the public kinds opened in [start, end), oldest first, without exercises."""
    a = schema.alerts
    return conn.execute(
        # A wave from upstream is not an episode of its own: its source's episode is reported.
        sa.select(a).where(a.c.kind.in_(GAUGE_ALERT_KINDS), a.c.exercise == sa.false(),
                           a.c.opened_at >= start, a.c.opened_at < end)
        .order_by(a.c.opened_at, a.c.id).limit(MAX_EPISODES + 1)
    ).all()


def _grouped(rows: Sequence, key: str) -> dict:
    out: dict = {}
    for row in rows:
        out.setdefault(getattr(row, key), []).append(row)
    return out


def episodes(conn: Connection, alerts: Sequence, now: datetime) -> list[reports.EpisodeData]:
    """Each alert's facts, with events and SMS read in one query each for all of them."""
    ids = [a.id for a in alerts]
    events = _grouped(reports.event_rows(conn, ids), "alert_id") if ids else {}
    sms = _grouped(reports.notification_rows(conn, ids), "alert_id") if ids else {}
    stations: dict[str, dict] = {}
    out = []
    for alert in alerts:
        if alert.station_id not in stations:
            stations[alert.station_id] = reports.station_doc(conn, alert.station_id)
        out.append(reports.load_episode(conn, alert, stations[alert.station_id], now,
                                        raw_events=events.get(alert.id, []), rows=sms.get(alert.id, [])))
    return out


def core_episode(data: reports.EpisodeData) -> core.Episode:
    """One episode as the core's period figures take it."""
    sent, delivered, residents = core.resident_warning_counts(data.sms)
    alert = data.alert
    return core.Episode(alert_id=alert.id, station_id=alert.station_id, kind=alert.kind, opened_at=alert.opened_at,
                        closed_at=alert.closed_at, peak_level=alert.peak_level, peak=data.peak, warnings_sent=sent,
                        warnings_delivered=delivered, residents_warned=residents, lead=data.lead)


def episode_doc(data: reports.EpisodeData, episode: core.Episode) -> dict:
    """One episode row of the summary."""
    station, peak = data.station, episode.peak
    return {
        "alert_id": episode.alert_id, "station_id": episode.station_id, "station": station.get("name"),
        "river": station.get("river"), "kecamatan": station.get("kecamatan"), "kind": episode.kind,
        "state": data.alert.state, "opened_at": rfc3339(episode.opened_at), "closed_at": rfc3339(episode.closed_at),
        "peak_level": episode.peak_level, "peak_value": None if peak is None else peak.value,
        "peak_at": None if peak is None else rfc3339(peak.ts), "unit": data.chart.unit,
        "rain_window": data.chart.window, "warnings_sent": episode.warnings_sent,
        "warnings_delivered": episode.warnings_delivered, "residents_warned": episode.residents_warned,
        "lead_time_s": episode.lead.seconds, "lead_time_status": episode.lead.status,
        "late_readings": episode.lead.late_readings, "report": f"/api/v1/alerts/{episode.alert_id}/report",
    }


def period_summary(conn: Connection, start: datetime, end: datetime, now: datetime, zone_name: str) -> dict:
    """The summary document of [start, end)."""
    alerts = episode_alerts(conn, start, end)
    truncated = len(alerts) > MAX_EPISODES
    data = episodes(conn, alerts[:MAX_EPISODES], now)
    core_episodes = [core_episode(d) for d in data]
    names = {d.alert.station_id: d.station for d in data}
    stations = []
    for row in core.station_peaks(core_episodes):
        station = names[row["station_id"]]
        stations.append({**row, "station": station.get("name"), "river": station.get("river"),
                         "kecamatan": station.get("kecamatan"), "peak_at": rfc3339(row["peak_at"])})
    return {
        "from": rfc3339(start), "to": rfc3339(end), "timezone": zone_name, "generated_at": rfc3339(now),
        "totals": core.period_totals(core_episodes),
        "stations": stations,
        "episodes": [episode_doc(d, e) for d, e in zip(data, core_episodes)],
        "truncated": truncated,
    }


def _local(text: str | None, zone: tzinfo) -> str:
    stamp = reports.parse_ts(text)
    return "" if stamp is None else stamp.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _text(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def summary_csv(doc: dict, zone: tzinfo, tz_label: str) -> str:
    """The episodes of a summary as CSV (one row each; times local, ``tz_label`` e.g. WITA), for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.format(tz=tz_label.lower()) for c in CSV_COLUMNS])
    for e in doc["episodes"]:
        lead = e["lead_time_s"]
        writer.writerow([
            e["alert_id"], _text(e["station_id"]), _text(e["station"]), _text(e["river"]), _text(e["kecamatan"]),
            e["kind"], _local(e["opened_at"], zone), _local(e["closed_at"], zone), e["peak_level"],
            "" if e["peak_value"] is None else e["peak_value"], e["unit"], e["warnings_sent"],
            e["warnings_delivered"], e["residents_warned"], "" if lead is None else round(lead / 60, 1),
            "" if lead is None else lead, e["lead_time_status"], "yes" if e["late_readings"] else "no",
        ])
    return out.getvalue()
