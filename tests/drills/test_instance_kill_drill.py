"""Kill one ingest instance of three on PostgreSQL while a backlog drains (spec section 16, issue 19).

Three ``ews run`` processes share the readings and backlog subscriptions (``$share/ews/...``).
A gateway network comes back and flushes 12,000 old readings of 60 stations plus the floods
of 6 stations (each rising through AWAS and falling back) on the backlog topic; mid-drain one
instance is SIGKILLed and restarted as systemd would. A station's messages reach any of the
three, so each instance judges from its held state only until another one wrote the station
(its version moved). Every reading must be stored once, every flood must be one alert with
each event recorded once, and no resident may get any SMS twice.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import subscribers
from service.db import schema
from tests.support.infra import MOSQUITTO, PrivateMosquitto, fresh_database, postgres_base_url, wait_until
from tests.support.ingest import iso
from tests.support.instances import FLOOD, Instance, bulk_station_rows, bulk_stored
from tests.support.mqtt import Publisher
from tests.support.services import make_services

pytestmark = [pytest.mark.drill, pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (shared subscriptions)"),
              pytest.mark.skipif(not postgres_base_url(), reason="PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")]

BULK = 60  # stations with 200 quiet readings each
PER_STATION = 200
FLOODS = 6  # of them, the first six also carry a flood (FLOOD: waspada, siaga, awas and back)


def bulk_backlog(prefix: str, now: datetime) -> list[tuple[str, dict]]:
    """The flush of the quiet stations: a day of readings each, oldest first."""
    quiet_start = now.replace(second=0, microsecond=0) - timedelta(days=1)
    items = []
    for minute in range(PER_STATION):
        ts = iso(quiet_start + timedelta(minutes=minute))
        for s in range(FLOODS, BULK):
            items.append((f"{prefix}/stations/BNC-{s:03d}/backlog",
                          {"ts": ts, "values": {"water_level": round(0.5 + (s % 7) * 0.01 + minute * 1e-4, 4)}}))
    return items


def flood_count(engine) -> int:
    r = schema.readings
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(r).where(
            r.c.station_id.in_([f"BNC-{s:03d}" for s in range(FLOODS)]))).scalar_one()


def flush_floods(broker_url: str, prefix: str, now: datetime, engine, errors: list) -> None:
    """The flood stations' backlog: sample by sample (each stored before the next is sent), all six at once."""
    try:
        publisher = Publisher(broker_url)
        start = now.replace(second=0, microsecond=0) - timedelta(hours=5)
        for i, value in enumerate(FLOOD):
            for s in range(FLOODS):
                publisher.publish(f"{prefix}/stations/BNC-{s:03d}/backlog",
                                  {"ts": iso(start + timedelta(minutes=10 * i)), "values": {"water_level": value}})
            publisher.wait_all(60)
            wait_until(lambda: flood_count(engine) >= FLOODS * (i + 1), 120, f"flood sample {i}")
            time.sleep(0.2)
        publisher.close()
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def test_one_of_three_instances_killed_mid_backlog_loses_and_doubles_nothing(tmp_path, figure):
    with fresh_database("postgresql", tmp_path) as url:
        (tmp_path / "mosquitto").mkdir()
        broker = PrivateMosquitto(tmp_path / "mosquitto").start()
        setup = make_services(url)
        engine = setup.engine
        instances: list[Instance] = []
        try:
            now = datetime.now(timezone.utc)
            with engine.begin() as conn:
                conn.execute(sa.insert(schema.stations), bulk_station_rows(now)[:BULK])
                person = subscribers.create(conn, {"phone": "0812-3333-0001", "areas": [{"kecamatan": "Nuha"}],
                                                   "role": "resident"}, now).id
            prefix = f"ewstest/kill-{uuid.uuid4().hex[:8]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
            env.update({"EWS_DATABASE_URL": url, "EWS_MQTT_URL": broker.url, "EWS_MQTT_TOPIC_PREFIX": prefix,
                        "EWS_HTTP_HOST": "127.0.0.1", "EWS_SMS_PROVIDER": "console", "EWS_SMS_MAX_PER_SECOND": "100",
                        "EWS_LEADER_LEASE_S": "4", "EWS_LOG_LEVEL": "INFO", "EWS_SEED": "luwu-timur"})
            tag = uuid.uuid4().hex[:6]
            instances = [Instance(tmp_path / "instances", f"ews-{tag}-{n}", env).start() for n in (1, 2, 3)]
            for instance in instances:
                instance.wait_ready()
            for instance in instances:
                assert "backlog session" in instance.log() and "$share/ews/" in instance.log()

            items = bulk_backlog(prefix, now)
            expected = len(items) + FLOODS * len(FLOOD)
            flood_errors: list[BaseException] = []
            floods = threading.Thread(target=flush_floods, args=(broker.url, prefix, now, engine, flood_errors),
                                      daemon=True)
            publisher = Publisher(broker.url, max_inflight=500)
            started = time.monotonic()
            for topic, body in items:
                publisher.publish(topic, body)
            floods.start()
            wait_until(lambda: bulk_stored(engine)[0] >= len(items) // 4, 120, "a quarter of the backlog stored",
                       interval=0.05)
            victim = instances[1]
            victim.kill()
            at_kill = bulk_stored(engine)[0]
            wait_until(lambda: bulk_stored(engine)[0] > at_kill, 60, "the survivors to keep storing")
            victim.start()  # the restart policy; its shares waited in its persistent sessions
            victim.wait_ready()
            publisher.wait_all(120)
            publisher.close()
            wait_until(lambda: bulk_stored(engine)[0] >= expected, 240, "every reading of the backlog", interval=0.2)
            drained_in = time.monotonic() - started
            floods.join(120)
            assert not flood_errors, flood_errors

            def flood_sms_sent():
                with engine.connect() as conn:
                    rows = conn.execute(sa.select(schema.notifications.c.status)
                                        .where(schema.notifications.c.subscriber_id == person)).scalars().all()
                return len(rows) >= 4 * FLOODS and all(s == "sent" for s in rows)

            wait_until(flood_sms_sent, 90, "the floods' SMS to be sent")
            time.sleep(5)  # anything extra would show up now

            total, distinct = bulk_stored(engine)
            with engine.connect() as conn:
                alert_rows = conn.execute(sa.select(schema.alerts).where(schema.alerts.c.kind == "water_level")
                                          .order_by(schema.alerts.c.id)).all()
                events = conn.execute(sa.select(schema.alert_events).order_by(schema.alert_events.c.id)).all()
                sms = conn.execute(sa.select(schema.notifications).where(
                    schema.notifications.c.subscriber_id == person)).all()
                dead = conn.execute(sa.select(sa.func.count()).select_from(schema.dead_letters)).scalar_one()
            assert total == distinct == expected, "a reading was lost or stored twice"
            assert dead == 0
            assert sorted(a.station_id for a in alert_rows) == [f"BNC-{s:03d}" for s in range(FLOODS)]
            assert all(a.state == "closed" and a.peak_level == "awas" for a in alert_rows)
            for alert in alert_rows:
                mine = [e for e in events if e.alert_id == alert.id]
                keys = [(e.type, e.level, e.at) for e in mine]
                assert len(keys) == len(set(keys)), f"an event was recorded twice: {keys}"
                told = [e for e in mine if e.dispatch == "done"]
                assert [e.level for e in told][:3] == ["waspada", "siaga", "awas"] and told[-1].type == "cleared"
            pairs = collections.Counter(n.event_id for n in sms)
            assert all(c == 1 for c in pairs.values()), "an SMS was queued twice"
            told_ids = {e.id for e in events if e.dispatch == "done"
                        and e.alert_id in {a.id for a in alert_rows}}
            assert set(pairs) == told_ids and all(n.status == "sent" for n in sms)
            figure.summary(f"{expected:,} backlog readings over {BULK} stations, one of three instances SIGKILLed "
                           f"at {at_kill:,} stored and restarted; all stored once in {drained_in:.1f} s, "
                           f"{len(alert_rows)} floods with {len(told_ids)} warnings, each SMS once")
        finally:
            for instance in instances:
                instance.stop()
            engine.dispose()
            broker.stop()
