"""Data quality before judgment (spec section 17) on a real database, through the real ingest path and API.

SQLite always; PostgreSQL too when EWS_TEST_DATABASE_URL is set (a fresh database per test).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import alerting
from service.db.schema import alert_events, alerts, readings, station_state
from tests.support.api import make_harness
from tests.support.ingest import send_at

STATION = "KLN-WOTU"  # seed: waspada 2.8, siaga 3.5, awas 4.2; rise 0.5 m/h; 10-minute samples
NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
T0 = NOW - timedelta(days=1)


@pytest.fixture
def api(database_url):
    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


def send(services, minute: float, value: float, station: str = STATION) -> list[dict]:
    return send_at(services, station, T0 + timedelta(minutes=minute), {"water_level": value}, timedelta(seconds=30))


def steady(services, count: int = 12) -> int:
    """Two hours of 1.40-1.41 m every 10 minutes; return the next minute."""
    for i in range(count):
        send(services, 10 * i, 1.40 + 0.01 * (i % 2))
    return 10 * count


def qualities(services) -> dict[float, str]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(readings.c.value, readings.c.quality).where(
            readings.c.station_id == STATION, readings.c.quality != "good")).all()
    return {row.value: row.quality for row in rows}


def alerts_of(services, kind: str):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.station_id == STATION, alerts.c.kind == kind)
                            .order_by(alerts.c.id)).all()


def events_of(services, alert_id: int) -> list[tuple[str, str]]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(alert_events).where(alert_events.c.alert_id == alert_id)
                            .order_by(alert_events.c.id)).all()
    return [(r.type, r.dispatch) for r in rows]


def quality_metric(services, mark: str) -> float:
    return services.metrics.registry.get_sample_value("ews_readings_quality_total", {"quality": mark}) or 0.0


def test_a_spike_is_stored_marked_told_to_staff_once_and_judged_never(api):
    services = api.services
    minute = steady(services)
    held = send(services, minute, 4.6)
    assert [(e["kind"], e["type"], e["dispatch"]) for e in held] == [("sensor", "raised", "pending")]
    assert qualities(services) == {4.6: "doubtful"}
    with services.engine.connect() as conn:
        assert conn.execute(sa.select(station_state.c.quality_due_at)
                            .where(station_state.c.station_id == STATION)).scalar_one() is not None
    send(services, minute + 10, 1.41)
    assert qualities(services) == {4.6: "spike"}
    assert alerts_of(services, "water_level") == []
    (sensor,) = alerts_of(services, "sensor")
    assert sensor.state == "closed" and events_of(services, sensor.id) == [("raised", "pending"), ("cleared", "none")]
    assert quality_metric(services, "spike") == 1 and quality_metric(services, "doubtful") == 1
    listed = api.call("GET", f"/api/v1/stations/{STATION}/readings?metric=water_level&limit=3", role="viewer")
    assert [(i["value"], i["quality"]) for i in listed.get_json()["items"]] == [
        (1.41, "good"), (4.6, "spike"), (1.41, "good")]
    sensor_alerts = api.call("GET", "/api/v1/alerts?kind=sensor", role="viewer").get_json()["items"]
    assert [a["id"] for a in sensor_alerts] == [sensor.id]
    # The dashboard chart marks it (its data: [t, value, quality] beside the points).
    chart = api.call("GET", f"/dashboard/stations/{STATION}/series.json?hours=48", role=None).get_json()
    assert [q[1:] for q in chart["quality"]] == [[4.6, "spike"]]
    assert chart["events"] == []  # the public chart shows no staff-only sensor alert


def test_a_doubtful_sample_followed_by_silence_is_judged_by_the_scheduled_check(services):
    minute = steady(services)
    send(services, minute, 4.6)
    held_at = T0 + timedelta(minutes=minute)
    assert alerting.judge_overdue(services.engine, held_at + timedelta(seconds=1199)) == 0
    assert alerts_of(services, "water_level") == []
    assert alerting.judge_overdue(services.engine, held_at + timedelta(seconds=1230), services.metrics) == 1
    (alert,) = alerts_of(services, "water_level")
    assert alert.level == "awas" and alert.opened_at == held_at and events_of(services, alert.id) == [
        ("raised", "pending")]
    assert qualities(services) == {4.6: "doubtful"}  # judged as it is, never confirmed
    assert alerting.judge_overdue(services.engine, held_at + timedelta(seconds=1300)) == 0  # nothing held any more
    (sensor,) = alerts_of(services, "sensor")
    assert sensor.state == "closed"


def test_a_real_rise_is_confirmed_by_the_next_sample(services):
    minute = steady(services)
    events = [send(services, minute + 10 * i, v) for i, v in enumerate([2.6, 3.4, 4.5, 4.9])]
    kinds = [[(e["kind"], e["type"], e["level"]) for e in batch] for batch in events]
    assert kinds[0] == [("sensor", "raised", "waspada")]
    assert ("water_level", "raised", "waspada") in kinds[1]
    assert kinds[2] == [("sensor", "raised", "waspada")]
    assert ("water_level", "escalated", "awas") in kinds[3]
    assert qualities(services) == {}


def test_a_stuck_sensor_raises_a_staff_alert_until_it_moves(services):
    for i in range(38):  # 6 h 10 min within a millimetre
        send(services, 10 * i, 1.205 + 0.001 * (i % 2))
    (sensor,) = alerts_of(services, "sensor")
    assert sensor.state == "active" and sensor.opened_at == T0 + timedelta(hours=6)
    send(services, 380, 1.26)
    (sensor,) = alerts_of(services, "sensor")
    assert sensor.state == "closed" and events_of(services, sensor.id) == [("raised", "pending"), ("cleared", "pending")]
    assert alerts_of(services, "water_level") == []


def test_the_event_report_lists_spikes_and_leaves_them_out_of_the_chart_and_peak(api):
    services = api.services
    minute = steady(services, 6)
    rise = [2.0, 2.9, 3.3, 3.4, 9.5, 3.35, 3.1, 2.6, 2.2, 2.0, 2.0, 2.0, 2.0]  # 9.5 m: an echo off debris
    for i, value in enumerate(rise):
        send(services, minute + 10 * i, value)
    assert qualities(services) == {9.5: "spike"}
    (alert,) = alerts_of(services, "water_level")
    assert alert.peak_level == "waspada" and alert.state == "closed"
    report = api.call("GET", f"/api/v1/alerts/{alert.id}/report", role="viewer")
    assert report.status_code == 200, report.get_data(as_text=True)
    doc = report.get_json()
    assert [(s["value"], s["quality"]) for s in doc["spikes"]] == [(9.5, "spike")]
    assert doc["series"]["peak"]["value"] == 3.4
    page = api.call("GET", f"/api/v1/alerts/{alert.id}/report.html?lang=en", role="viewer")
    assert page.status_code == 200 and "spike: refuted by the next sample" in page.get_data(as_text=True)
