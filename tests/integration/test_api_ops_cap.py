"""Operations endpoints over a real database (CAP: test_cap_public.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from service.bootstrap import Health
from service.db import schema
from service.http import create_app
from tests.support.api import make_harness

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


def add_alert(api, station_id, kind, steps, state="active"):
    """Insert an alert and its events ``[(type, level, value)]``; return the alert id."""
    levels = [lvl for _, lvl, _ in steps if lvl != "normal"] or ["waspada"]
    with api.services.engine.begin() as conn:
        alert_id = conn.execute(sa.insert(schema.alerts).values(
            station_id=station_id, kind=kind, level=steps[-1][1], peak_level=max(levels, key=["waspada", "siaga", "awas"].index),
            state=state, opened_at=T0, closed_at=T0 + timedelta(hours=2) if state == "closed" else None,
        ).returning(schema.alerts.c.id)).scalar_one()
        for i, (event_type, level, value) in enumerate(steps):
            at = T0 + timedelta(minutes=10 * i)
            conn.execute(sa.insert(schema.alert_events).values(
                alert_id=alert_id, type=event_type, level=level, at=at, recorded_at=at + timedelta(seconds=2),
                reading={"metric": kind, "value": value, "ts": at.isoformat()}))
    return alert_id


def test_healthz_readyz(api):
    assert api.client.get("/healthz").get_json() == {"status": "ok"}
    down = api.client.get("/readyz")
    assert down.status_code == 503 and down.content_type == "application/problem+json"
    assert "MQTT" in down.get_json()["detail"]
    connected = dataclasses.replace(api.services, health=Health(mqtt_connected=lambda: True))
    up = create_app(connected).test_client().get("/readyz")
    assert up.status_code == 200 and up.get_json()["checks"] == {"database": True, "mqtt": True}


def test_readyz_asks_each_role_only_for_what_it_runs(api):
    def ready(role: str, **up):
        """/readyz of a process of ``role`` whose parts named in ``up`` answer as given (the others: not running)."""
        health = Health(role=role, **{probe: (lambda value=value: value) for probe, value in up.items()})
        answer = create_app(dataclasses.replace(api.services, health=health)).test_client().get("/readyz")
        return answer.status_code, answer.get_json()

    assert ready("api") == (200, {"status": "ready", "checks": {"database": True}, "warnings": []})  # no MQTT, no sender
    status, body = ready("worker", dispatcher_running=True)
    assert status == 503 and "scheduler is not running" in body["detail"]
    assert "dispatcher" not in body["detail"] and "MQTT" not in body["detail"]
    status, body = ready("worker", dispatcher_running=True, scheduler_running=True)
    assert status == 200 and body["checks"] == {"database": True, "dispatcher": True, "scheduler": True}
    status, body = ready("ingest")
    assert status == 503 and "MQTT not connected" in body["detail"] and "dispatcher" not in body["detail"]
    for role in ("ingest", "all"):
        status, body = ready(role, mqtt_connected=True)
        assert status == 200 and body["checks"] == {"database": True, "mqtt": True}, role


def test_metrics_text_includes_database_gauges(api):
    add_alert(api, "PKR-LASKAP", "water_level", [("raised", "siaga", 2.5)])
    add_alert(api, "ARR-MALILI", "rainfall", [("raised", "waspada", 12)], state="closed")
    now = datetime.now(timezone.utc)
    with api.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.notifications), [
            {"phone": "+6281234567890", "language": "id", "kind": "warning", "body": "x", "status": status,
             "created_at": now, "updated_at": now} for status in ("sent", "sent", "failed")])
    api.services.metrics.readings_rejected.labels(reason="bad_timestamp").inc()
    response = api.client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    alerts = {(s.labels["level"], s.labels["kind"]): s.value for s in families["ews_alerts_active"].samples}
    assert alerts == {("siaga", "water_level"): 1}
    notes = {s.labels["status"]: s.value for s in families["ews_notifications"].samples}
    assert notes == {"sent": 2, "failed": 1}
    rejected = [s for s in families["ews_readings_rejected"].samples if s.name.endswith("_total")]
    assert rejected[0].labels == {"reason": "bad_timestamp"} and rejected[0].value == 1
