"""Spec section 9 through a real broker: a water_level sent to a rain gauge raises nothing, and one
message the database refuses never stalls the other stations' readings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from service.db.schema import alerts, dead_letters, readings
from tests.support.infra import wait_until
from tests.support.mqtt import Publisher
from tests.support.services import make_services

pytestmark = pytest.mark.broker


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def rows(services, query):
    with services.engine.connect() as conn:
        return conn.execute(query).all()


def test_a_water_level_sent_to_a_rain_gauge_never_raises_a_flood_warning(sqlite_url, broker_url, topic_prefix, mqtt_ingest):
    services = make_services(sqlite_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    mqtt_ingest(services)
    publisher = Publisher(broker_url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        # The case: water_level 3.5 at ARR-MALILI raised "AWAS banjir" for Malili.
        publisher.publish(f"{topic_prefix}/stations/ARR-MALILI/readings",
                          {"ts": iso(now), "values": {"water_level": 3.5, "battery": 12.6}})
        publisher.wait_all()
        wait_until(lambda: rows(services, select(readings).where(readings.c.metric == "battery")), 30,
                   "the battery value of the same sample")
    finally:
        publisher.close()
    assert rows(services, select(readings.c.metric).where(readings.c.station_id == "ARR-MALILI")) == [("battery",)]
    assert rows(services, select(alerts)) == []
    assert rows(services, select(dead_letters.c.reason, dead_letters.c.station_id)) == [("metric_not_configured", "ARR-MALILI")]


def test_a_message_the_database_refuses_never_stalls_the_other_stations(database_url, broker_url, topic_prefix, mqtt_ingest):
    if not database_url.startswith("postgresql"):
        pytest.skip("a value the database refuses: PostgreSQL")
    services = make_services(database_url, EWS_MQTT_TOPIC_PREFIX=topic_prefix)
    with services.engine.begin() as conn:  # PostgreSQL refuses this one value (a DataError, SQLSTATE 22003)
        conn.execute(text("""CREATE FUNCTION refuse_666() RETURNS trigger AS $$ BEGIN
            IF NEW.value = 6.66 THEN RAISE EXCEPTION 'out of range' USING ERRCODE = 'numeric_value_out_of_range'; END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql"""))
        conn.execute(text("CREATE TRIGGER refuse_666 BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION refuse_666()"))
    mqtt_ingest(services)
    publisher = Publisher(broker_url)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    poison = f'{{"ts": "{iso(start)}", "values": {{"water_level": 6.66}}}}'.encode()
    try:
        publisher.publish(f"{topic_prefix}/stations/PKR-LASKAP/readings", poison)
        publisher.wait_all()
        for i in range(20):
            publisher.publish(f"{topic_prefix}/stations/MLL-MALILI/readings",
                              {"ts": iso(start + timedelta(minutes=i)), "values": {"water_level": 1.0 + i / 100}})
        publisher.wait_all()
        wait_until(lambda: len(rows(services, select(readings).where(readings.c.station_id == "MLL-MALILI"))) == 20,
                   60, "every reading of the other station, behind the refused one")
    finally:
        publisher.close()
    letters = rows(services, select(dead_letters.c.reason, dead_letters.c.payload))
    assert letters == [("internal_error", poison.decode())]
