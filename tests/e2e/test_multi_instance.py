"""Three ``ews run`` instances on one PostgreSQL database and one Mosquitto (issue 9, docs/deploy.md).

What is checked (the lease and the shared outbox alone: tests/e2e/test_leases_and_outbox.py):
- three ``ews run`` processes (shared subscription ``$share/ews/...``, distinct client ids, persistent
  sessions): 20,000 readings from 100 stations stored once each and a flood replay raising each
  alert event and each SMS once, while the leader is SIGKILLed mid-run. The killed instance is
  restarted with the same client id, as systemd or Docker would (``Restart=always``): its share of
  the readings waited in its persistent session (tech-notes #15) and is stored when it is back.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from service import subscribers
from service.db import schema
from service.leader import current_holder
from tests.support.infra import MOSQUITTO, PrivateMosquitto, fresh_database, postgres_base_url, wait_until
from tests.support.ingest import iso
from tests.support.instances import BULK_STATIONS, FLOOD, Instance, bulk_station_rows, bulk_stored
from tests.support.mqtt import Publisher
from tests.support.services import make_services

needs_postgres = pytest.mark.skipif(not postgres_base_url(), reason="PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (shared subscriptions)")

BULK_PER_STATION = 200  # 20,000 readings
LEASE_S = 4


# --------------------------------------------------------------------------- three processes


def count(engine, query) -> int:
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def bulk_count(engine) -> int:
    r = schema.readings
    return count(engine, sa.select(sa.func.count()).select_from(r).where(r.c.station_id.like("BNC-%")))


def flood_count(engine) -> int:
    r = schema.readings
    return count(engine, sa.select(sa.func.count()).select_from(r).where(r.c.station_id == "PKR-LASKAP",
                                                                         r.c.metric == "water_level"))


def holder_pid(engine) -> tuple[str, int] | None:
    """The live lease holder and its pid (holders are ``host-pid-tag``)."""
    found = current_holder(engine)
    if found is None:
        return None
    holder, expires_at = found
    with engine.connect() as conn:
        db_now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    if expires_at <= db_now:
        return None
    return holder, int(holder.rsplit("-", 2)[1])


@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.slow
@needs_postgres
@needs_mosquitto
def test_three_instances_store_each_reading_and_send_each_sms_once_while_the_leader_is_killed(tmp_path):
    with fresh_database("postgresql", tmp_path) as url:
        broker = PrivateMosquitto(_mkdir(tmp_path / "mosquitto")).start()
        instances: list[Instance] = []
        setup = make_services(url)  # migrated, the Luwu Timur stations
        engine = setup.engine
        try:
            now = datetime.now(timezone.utc)
            with engine.begin() as conn:
                conn.execute(sa.insert(schema.stations), bulk_station_rows(now))
                people = [subscribers.create(conn, {"phone": phone, "areas": areas, "role": "resident"}, now).id
                          for phone, areas in (("0812-2222-0001", [{"kecamatan": "Malili", "desa": "Laskap"}]),
                                               ("0812-2222-0002", [{"kecamatan": "MALILI"}]))]
            prefix = f"ewstest/mi-{uuid.uuid4().hex[:8]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
            env.update({
                "EWS_DATABASE_URL": url, "EWS_MQTT_URL": broker.url, "EWS_MQTT_TOPIC_PREFIX": prefix,
                "EWS_HTTP_HOST": "127.0.0.1", "EWS_SMS_PROVIDER": "console", "EWS_SMS_MAX_PER_SECOND": "100",
                "EWS_LEADER_LEASE_S": str(LEASE_S), "EWS_LOG_LEVEL": "INFO", "EWS_SEED": "luwu-timur",
            })  # EWS_MQTT_SHARED_GROUP unset: PostgreSQL + external broker share the group "ews"
            tag = uuid.uuid4().hex[:6]
            instances = [Instance(tmp_path / "instances", f"ews-{tag}-{n}", env).start() for n in (1, 2, 3)]
            for instance in instances:
                instance.wait_ready()
            for instance in instances:
                assert "$share/ews/" in instance.log(), "ingest did not join the shared group"
            first = wait_until(lambda: holder_pid(engine), 15, "a scheduler lease holder")
            leader = next(i for i in instances if i.pid == first[1])

            # The flood: one station, in order (one sample stored before the next is sent, like a gateway
            # every 10 minutes), while 20,000 bulk readings flood the broker at full speed.
            flood_start = now.replace(microsecond=0) - timedelta(hours=5)
            flood_errors: list[BaseException] = []

            def replay_flood():
                try:
                    publisher = Publisher(broker.url)
                    for i, value in enumerate(FLOOD):
                        body = {"ts": iso(flood_start + timedelta(minutes=10 * i)), "values": {"water_level": value}}
                        publisher.publish(f"{prefix}/stations/PKR-LASKAP/readings", body)
                        publisher.wait_all(30)
                        wait_until(lambda: flood_count(engine) >= i + 1, 90, f"flood sample {i}")
                        time.sleep(0.3)
                    publisher.close()
                except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                    flood_errors.append(exc)

            bulk_start = now.replace(second=0, microsecond=0) - timedelta(days=1)
            published_in: list[float] = []

            def publish_bulk():
                publisher = Publisher(broker.url, max_inflight=500)
                for minute in range(BULK_PER_STATION):
                    ts = iso(bulk_start + timedelta(minutes=minute))
                    for s in range(BULK_STATIONS):
                        value = round(0.5 + (s % 7) * 0.01 + minute * 1e-4, 4)
                        publisher.publish(f"{prefix}/stations/BNC-{s:03d}/readings", {"ts": ts, "values": {"water_level": value}})
                publisher.wait_all(120)
                published_in.append(time.monotonic() - started)
                publisher.close()

            flood = threading.Thread(target=replay_flood, daemon=True)
            bulk = threading.Thread(target=publish_bulk, daemon=True)
            started = time.monotonic()
            flood.start()
            bulk.start()

            # Mid-run: SIGKILL the leader (it is also an ingest member and a dispatcher).
            wait_until(lambda: bulk_count(engine) >= 5000, 90, "5,000 bulk readings stored", interval=0.05)
            before_kill = bulk_count(engine)
            leader.kill()
            killed_at = time.monotonic()
            moved = wait_until(lambda: (h := holder_pid(engine)) and h[1] != leader.pid and h, 3 * LEASE_S + 10,
                               "the scheduler lease to move")
            takeover_s = time.monotonic() - killed_at
            assert moved[1] in {i.pid for i in instances if i.alive}
            # The survivors keep storing their shares while the killed member's share waits for it.
            wait_until(lambda: bulk_count(engine) > before_kill, 60, "the survivors to keep storing")
            leader.start()  # the restart policy brings it back with the same client id
            leader.wait_ready()
            wait_until(lambda: bulk_count(engine) >= BULK_STATIONS * BULK_PER_STATION, 120, "all 20,000 readings")
            drained_in = time.monotonic() - started
            bulk.join(60)
            flood.join(120)
            assert not flood_errors, flood_errors
            assert not flood.is_alive()

            # Each SMS of the flood sent: wait for the dispatchers, then look for anything extra.
            def flood_sms_sent():
                with engine.connect() as conn:
                    rows = conn.execute(sa.select(schema.notifications.c.status)
                                        .where(schema.notifications.c.subscriber_id.in_(people))).scalars().all()
                return len(rows) >= 8 and all(s == "sent" for s in rows)

            wait_until(flood_sms_sent, 60, "the flood's SMS to be sent")
            time.sleep(2 * LEASE_S)

            total, distinct = bulk_stored(engine)
            with engine.connect() as conn:
                dead = conn.execute(sa.select(sa.func.count()).select_from(schema.dead_letters)).scalar_one()
                alert_rows = conn.execute(sa.select(schema.alerts).where(schema.alerts.c.station_id == "PKR-LASKAP",
                                                                         schema.alerts.c.kind == "water_level")).all()
                events = conn.execute(sa.select(schema.alert_events)
                                      .where(schema.alert_events.c.alert_id.in_([a.id for a in alert_rows]))
                                      .order_by(schema.alert_events.c.id)).all()
                sms = conn.execute(sa.select(schema.notifications).order_by(schema.notifications.c.id)).all()
                final_holder = current_holder(engine)
            assert total == distinct == BULK_STATIONS * BULK_PER_STATION
            assert dead == 0
            assert flood_count(engine) == len(FLOOD)

            assert len(alert_rows) == 1
            told = [e for e in events if e.dispatch == "done"]
            assert [e.type for e in told] == ["raised", "escalated", "escalated", "cleared"]
            assert [e.level for e in told][:3] == ["waspada", "siaga", "awas"]
            keys = [(e.type, e.level, e.at) for e in events]
            assert len(keys) == len(set(keys)), f"an event was recorded twice: {keys}"

            pairs = collections.Counter((n.event_id, n.subscriber_id) for n in sms if n.event_id is not None)
            assert all(c == 1 for c in pairs.values()), "an SMS was queued twice"
            for person in people:
                # This alert's SMS (since spec 11 the stations downstream warn of the same wave too).
                mine = [n for n in sms if n.subscriber_id == person and n.alert_id in {a.id for a in alert_rows}]
                assert [n.event_id for n in mine] == [e.id for e in told]
                assert all(n.status == "sent" for n in mine)
            assert final_holder is not None and final_holder[0] == moved[0], "leadership moved back or flapped"

            drain_rate = BULK_STATIONS * BULK_PER_STATION / drained_in
            print(f"\nmulti-instance: published 20,000 in {published_in[0]:.1f} s, stored all in {drained_in:.1f} s "
                  f"({drain_rate:.0f}/s incl. a kill and restart); lease moved {takeover_s:.1f} s after the kill")
        finally:
            for instance in instances:
                instance.stop()
            engine.dispose()
            broker.stop()
            if os.environ.get("EWS_KEEP_LOGS"):
                for instance in instances:
                    print(f"--- {instance.name}\n{instance.log()[-5000:]}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
