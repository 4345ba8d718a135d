"""Operations endpoints and public CAP warnings over a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families

from service.db import schema
from tests.support.api import make_harness

XSD = Path(__file__).resolve().parents[1] / "data" / "CAP-v1.2.xsd"
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
ATOM = {"a": "http://www.w3.org/2005/Atom"}
T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def api(database_url):
    return make_harness(database_url)


@pytest.fixture(scope="module")
def cap_schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


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
    api.services.mqtt_connected = lambda: True
    up = api.client.get("/readyz")
    assert up.status_code == 200 and up.get_json()["checks"] == {"database": True, "mqtt": True}


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


def test_cap_chain_served_for_an_alert(api, cap_schema):
    alert_id = add_alert(api, "PKR-LASKAP", "water_level",
                         [("raised", "waspada", 1.9), ("escalated", "siaga", 2.5), ("acknowledged", "siaga", 2.5),
                          ("escalated", "awas", 3.1)])
    seen = []
    for extra in ([], [("cleared", "normal", 1.7)]):
        if extra:
            with api.services.engine.begin() as conn:
                at = T0 + timedelta(hours=1)
                conn.execute(sa.insert(schema.alert_events).values(
                    alert_id=alert_id, type="cleared", level="normal", at=at, recorded_at=at,
                    reading={"metric": "water_level", "value": 1.7, "ts": at.isoformat()}))
                conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == alert_id)
                             .values(state="closed", level="normal", closed_at=at))
        response = api.client.get(f"/cap/alerts/{alert_id}.xml")
        assert response.status_code == 200 and response.mimetype == "application/cap+xml"
        doc = etree.fromstring(response.data)
        assert cap_schema.validate(doc), cap_schema.error_log
        seen.append(doc)
    latest, cancel = seen
    assert latest.findtext("cap:msgType", namespaces=CAP) == "Update"
    assert len(latest.findtext("cap:references", namespaces=CAP).split()) == 2  # raised, escalated to siaga
    assert latest.find("cap:info", CAP).findtext("cap:severity", namespaces=CAP) == "Extreme"
    assert cancel.findtext("cap:msgType", namespaces=CAP) == "Cancel"
    refs = cancel.findtext("cap:references", namespaces=CAP).split()
    assert len(refs) == 3 and latest.findtext("cap:identifier", namespaces=CAP) in refs[-1]
    assert [i.findtext("cap:language", namespaces=CAP) for i in cancel.findall("cap:info", CAP)] == ["id", "en"]


def test_cap_is_only_for_public_alerts(api):
    offline = add_alert(api, "PKR-LASKAP", "offline", [("raised", "waspada", None)])
    assert api.client.get(f"/cap/alerts/{offline}.xml").status_code == 404
    for path in ["/cap/alerts/999999.xml", "/cap/alerts/abc.xml", "/cap/alerts/1", "/cap/alerts/" + "9" * 40 + ".xml"]:
        response = api.client.get(path)
        assert response.status_code == 404 and response.content_type == "application/problem+json", path


def test_atom_feed_lists_only_active_public_alerts(api):
    active = add_alert(api, "PKR-LASKAP", "water_level", [("raised", "siaga", 2.5)])
    add_alert(api, "ARR-MALILI", "rainfall", [("raised", "waspada", 12), ("cleared", "normal", 0)], state="closed")
    add_alert(api, "MLL-MALILI", "offline", [("raised", "waspada", None)])
    rain = add_alert(api, "ARR-SOROWAKO", "rainfall", [("raised", "waspada", 15), ("escalated", "awas", 45)])
    response = api.client.get("/cap/feed.atom")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    feed = etree.fromstring(response.data)
    links = [e.find("a:link", ATOM).get("href") for e in feed.findall("a:entry", ATOM)]
    public = api.services.settings.public_url
    assert sorted(links) == sorted([f"{public}/cap/alerts/{active}.xml", f"{public}/cap/alerts/{rain}.xml"])
    for link in links:
        assert api.client.get(link.removeprefix(public)).status_code == 200
