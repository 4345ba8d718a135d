"""A flood replayed through the real ingest and rules engine, then the dispatcher and the fake Twilio."""

from __future__ import annotations

import collections
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import alerting, subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import make_provider
from service.ingest import Message
from sinks.twilio import FakeTwilio
from tests.support.services import make_services

# Pongkeru at Laskap (waspada 1.8, siaga 2.4, awas 3.0 m): a rise to AWAS and back, one sample every 10 minutes.
LEVELS = [1.0, 1.05, 1.1, 1.6, 1.9, 2.1, 2.5, 2.8, 3.1, 3.3, 3.2, 2.9, 2.6, 2.2, 1.7, 1.4, 1.2, 1.1, 1.0, 1.0, 0.9]


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


def ingest(services, ts, value):
    body = json.dumps({"ts": ts.isoformat().replace("+00:00", "Z"), "values": {"water_level": value}}).encode()
    services.ingestor.ingest([Message(topic="ews/v1/stations/PKR-LASKAP/readings", payload=body,
                                      received_at=datetime.now(timezone.utc))])


def test_a_replayed_flood_warns_the_area_once_per_escalation_reminds_at_awas_and_clears(database_url):
    with FakeTwilio() as fake:
        services = make_services(database_url, **fake.env(), EWS_SMS_MAX_PER_SECOND="50")
        with services.engine.begin() as conn:  # the replayed readings are hours old: still fresh for this station
            rules = conn.execute(sa.select(schema.stations.c.rules).where(schema.stations.c.id == "PKR-LASKAP")).scalar()
            conn.execute(sa.update(schema.stations).where(schema.stations.c.id == "PKR-LASKAP")
                         .values(rules={**rules, "stale_after_s": 86400}))
        now = datetime.now(timezone.utc)
        people = {}
        with services.engine.begin() as conn:
            # One alert's chain: Laskap's wave to Malili (spec section 11) is tests/e2e/test_upstream_wave.py's.
            conn.execute(sa.update(schema.stations).where(schema.stations.c.id == "PKR-LASKAP").values(downstream=[]))
            for name, phone, areas, role, opted_out in (
                ("laskap", "0812-1111-0001", [{"kecamatan": "Malili", "desa": "laskap"}], "resident", False),
                ("malili", "0812-1111-0002", [{"kecamatan": "MALILI"}], "resident", False),
                ("wotu", "0812-1111-0003", [{"kecamatan": "Wotu", "desa": "Kalaena"}], "resident", False),
                ("stopped", "0812-1111-0004", [{"kecamatan": "Malili", "desa": "Laskap"}], "resident", True),
                ("staff", "0812-1111-0005", [{"kecamatan": "Nuha"}], "staff", False),
            ):
                row = subscribers.create(conn, {"phone": phone, "areas": areas, "role": role}, now)
                if opted_out:
                    subscribers.set_opted_out(conn, row.id, True, now)
                people[name] = row.id
        dispatcher = sms_dispatcher(services, make_provider(services.settings, services.metrics),
                                backoff_base=0.05, reconcile_after=0.05)
        try:
            start = now.replace(microsecond=0) - timedelta(hours=5)
            for i, value in enumerate(LEVELS[:11]):
                ingest(services, start + timedelta(minutes=10 * i), value)
                dispatcher.run_once()  # the dispatcher runs while the flood goes on
            assert alerting.remind_awas(services.engine, now + timedelta(hours=2)) == 1
            assert alerting.remind_awas(services.engine, now + timedelta(hours=2, minutes=1)) == 0
            dispatcher.run_once()
            for i, value in enumerate(LEVELS[11:], start=11):
                ingest(services, start + timedelta(minutes=10 * i), value)
            assert dispatcher.run_until_idle() == {}
            assert dispatcher.run_once()["sent_attempts"] == 0
        finally:
            dispatcher.stop()

        with services.engine.connect() as conn:
            events = conn.execute(sa.select(schema.alert_events).order_by(schema.alert_events.c.id)).fetchall()
            rows = conn.execute(sa.select(schema.notifications).order_by(schema.notifications.c.id)).fetchall()
        told = [e for e in events if e.dispatch == "done"]
        assert [e.type for e in told] == ["raised", "escalated", "escalated", "reminded", "cleared"]
        assert [e.level for e in told][:3] == ["waspada", "siaga", "awas"]
        assert all(e.dispatch == "none" for e in events if e.type == "deescalated")
        by_person = collections.defaultdict(list)
        for row in rows:
            by_person[row.subscriber_id].append(row)
        assert set(by_person) == {people["laskap"], people["malili"], people["staff"]}
        for person in by_person.values():
            assert [r.event_id for r in person] == [e.id for e in told]  # one message per event, none twice
            assert [r.kind for r in person] == ["warning"] * 3 + ["reminder", "all_clear"]
            assert all(r.status == "sent" for r in person)
        texts = [r.body for r in by_person[people["laskap"]]]
        assert "WASPADA" in texts[0] and "NAIK SIAGA" in texts[1] and "NAIK AWAS" in texts[2]
        assert "MASIH AWAS" in texts[3] and "NORMAL" in texts[4]
        assert collections.Counter(m["to"] for m in fake.accepted()) == {
            "+6281211110001": 5, "+6281211110002": 5, "+6281211110005": 5}
        services.engine.dispose()
