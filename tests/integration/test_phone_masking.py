"""Phone numbers never reach viewers, logs or stored error texts, even when the provider quotes them.

The real ``twilio`` library against the fake Twilio server, which answers error 21211 as Twilio
does: "The 'To' number +62... is not a valid phone number."
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from service import subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import expansion, make_provider, outbox
from service.http import create_app
from service.tokens import create_token
from sinks.twilio import FakeTwilio
from tests.support.services import make_services

PHONE = "+6281211110001"
MASKED = "+62812****0001"
n = schema.notifications


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


def warn_one_resident(services) -> None:
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        subscribers.create(conn, {"phone": PHONE, "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]}, now)
        alert_id = conn.execute(sa.insert(schema.alerts).values(
            station_id="PKR-LASKAP", kind="water_level", level="awas", peak_level="awas", state="active",
            opened_at=now).returning(schema.alerts.c.id)).scalar_one()
        conn.execute(sa.insert(schema.alert_events).values(
            alert_id=alert_id, type="raised", level="awas", at=now, recorded_at=now,
            reading={"metric": "water_level", "value": 3.3, "ts": now.isoformat()}, dispatch="pending"))


def test_a_provider_error_quoting_the_number_is_masked_in_storage_logs_and_the_api(database_url, caplog):
    with FakeTwilio() as fake:
        services = make_services(database_url, **fake.env())
        warn_one_resident(services)
        fake.fail_numbers[PHONE] = 21211
        dispatcher = sms_dispatcher(services, make_provider(services.settings, services.metrics), backoff_base=0.05)
        try:
            with caplog.at_level(logging.DEBUG):
                assert dispatcher.run_until_idle() == {}
        finally:
            dispatcher.stop()
    with services.engine.connect() as conn:
        (row,) = conn.execute(sa.select(n)).fetchall()
    assert (row.status, row.error_code) == ("failed", "21211")
    assert row.error_message.endswith(f"The 'To' number {MASKED} is not a valid phone number.")
    assert PHONE not in caplog.text and MASKED in caplog.text

    app = create_app(services)
    token = create_token(services.engine, "viewer", "test viewer")[1]
    listed = app.test_client().get("/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert PHONE[3:] not in str(listed) and listed["items"][0]["error_message"].count("****") == 1


def test_a_status_callback_quoting_the_number_is_stored_masked(database_url):
    services = make_services(database_url)
    warn_one_resident(services)
    now = datetime.now(timezone.utc)
    assert expansion.expand_events(services.engine, _templates(), services.settings.tz, now) == 1
    with services.engine.connect() as conn:
        notification_id = conn.execute(sa.select(n.c.id)).scalar_one()
    outbox.apply_status(services.engine, now, notification_id=notification_id, sid="SM" + "a" * 32,
                        provider_status="undelivered", error_code="30003",
                        error_message=f"Unreachable handset 0812-1111-0001 ({PHONE})")
    with services.engine.connect() as conn:
        stored = conn.execute(sa.select(n.c.error_message)).scalar_one()
    assert stored == "Unreachable handset 08121***0001 (+62812****0001)"


def _templates():
    from config.templates import default_templates

    return default_templates()
