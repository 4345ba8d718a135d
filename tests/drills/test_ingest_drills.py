"""Ingest fault drills against ``ews run`` as a subprocess: SIGKILL mid-stream, a Mosquitto restart,
PostgreSQL stopped for 30 s. Nothing may be lost or stored twice."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest

from tests.drills.helpers import StreamPublisher, sample_stream, wait_until
from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.service_process import PG_BIN, ServiceProcess, private_postgres, sqlite_count

pytestmark = [pytest.mark.drill, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (apt-get install mosquitto)")]

READINGS = "SELECT COUNT(*) FROM readings WHERE metric = 'water_level'"
DISTINCT = "SELECT COUNT(*) FROM (SELECT DISTINCT station_id, metric, ts FROM readings WHERE metric = 'water_level')"


def _service(tmp_path, broker_url, database_url, prefix, **env) -> ServiceProcess:
    return ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker_url, prefix=prefix,
                          client_id=f"ews-drill-{uuid.uuid4().hex[:8]}", env={"EWS_SEED": "luwu-timur", **env})


def _stored(database_url: str) -> tuple[int, int]:
    """The water levels stored, and how many of them are distinct (station, metric, time)."""
    return sqlite_count(database_url, READINGS), sqlite_count(database_url, DISTINCT)


@contextlib.contextmanager
def _streaming(tmp_path, total: int, rate: int, **stream):
    """``ews run`` on SQLite behind a private Mosquitto, ``total`` readings streaming in at ``rate`` a second."""
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    with private_mosquitto() as broker:
        service = _service(tmp_path, broker.url, database_url, prefix).start()
        publisher = StreamPublisher(broker.url)
        try:
            publisher.stream(sample_stream(prefix, total, **stream), rate=rate)
            yield broker, service, publisher, database_url
        finally:
            publisher.close()
            service.stop()


def test_sigkill_during_ingest_loses_and_duplicates_nothing(tmp_path, figure):
    total = 10_000
    with _streaming(tmp_path, total, 1500) as (_, service, publisher, database_url):
        wait_until(lambda: sqlite_count(database_url, READINGS) >= 2000, 60, "2,000 readings before the kill")
        service.kill()
        at_kill = sqlite_count(database_url, READINGS)
        down = time.monotonic()
        service.start()
        restart_s = time.monotonic() - down
        publisher.wait_all()
        wait_until(lambda: sqlite_count(database_url, READINGS) >= total, 120, f"{total} readings")
        time.sleep(1.0)  # a duplicate or a late redelivery would show up now
        stored, distinct = _stored(database_url)
    figure("readings stored when killed", at_kill)
    figure("restart to ready", f"{restart_s:.1f} s")
    figure("stored / distinct / published", f"{stored} / {distinct} / {total}")
    figure.summary(f"SIGKILL at {at_kill} of {total} readings; after restart {stored} stored, "
                   f"{total - distinct} lost, {stored - distinct} duplicated")
    assert stored == distinct == total


def test_mosquitto_restart_mid_stream_loses_nothing(tmp_path, figure):
    total = 10_000
    with _streaming(tmp_path, total, 1000, seed=5) as (broker, service, publisher, database_url):
        wait_until(lambda: sqlite_count(database_url, READINGS) >= 2000, 60, "2,000 readings before the restart")
        broker.stop()
        stopped = time.monotonic()
        at_stop = sqlite_count(database_url, READINGS)
        time.sleep(3)
        readyz_while_down = service.status("/readyz")
        broker.start()
        outage_s = time.monotonic() - stopped
        reconnect_s = wait_until(lambda: service.status("/readyz") == 200 and time.monotonic() - stopped, 60,
                                 "the service to reconnect by itself")
        publisher.wait_all()
        wait_until(lambda: sqlite_count(database_url, READINGS) >= total, 120, f"{total} readings")
        time.sleep(1.0)
        stored, distinct = _stored(database_url)
    figure("readings stored when the broker stopped", at_stop)
    figure("broker outage", f"{outage_s:.1f} s; /readyz meanwhile {readyz_while_down}")
    figure("broker stop to /readyz 200 again", f"{reconnect_s:.1f} s")
    figure.summary(f"Mosquitto stopped {outage_s:.1f} s at {at_stop} of {total}; service ready again "
                   f"{reconnect_s:.1f} s after the stop; {stored} stored, {total - distinct} lost")
    assert readyz_while_down == 503
    assert stored == distinct == total


@pytest.mark.skipif(PG_BIN is None, reason="drill needs the PostgreSQL server binaries (initdb, pg_ctl)")
def test_postgresql_stopped_for_30_s_pauses_ingest_and_loses_nothing(tmp_path, figure):
    import sqlalchemy as sa

    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    total, rate = 4000, 100
    with private_mosquitto() as broker, private_postgres() as pg:
        database_url = pg.create_database("ews_drill")
        service = _service(tmp_path, broker.url, database_url, prefix).start()
        engine = sa.create_engine(database_url, pool_pre_ping=True)

        def count() -> int:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT COUNT(*) FROM readings WHERE metric = 'water_level'")).scalar_one()

        publisher = StreamPublisher(broker.url)
        try:
            publisher.stream(sample_stream(prefix, total, seed=9), rate=rate)
            wait_until(lambda: count() >= 500, 60, "500 readings before stopping PostgreSQL")
            engine.dispose()
            pg.stop()
            stopped = time.monotonic()
            statuses = []
            while time.monotonic() - stopped < 30:
                statuses.append(service.status("/readyz"))
                time.sleep(1.0)
            pg.start()
            back = time.monotonic()
            ready_again_s = wait_until(lambda: service.status("/readyz") == 200 and time.monotonic() - back, 60,
                                       "/readyz 200 after PostgreSQL is back")
            publisher.wait_all()
            wait_until(lambda: count() >= total, 120, f"{total} readings")
            time.sleep(1.0)
            with engine.connect() as conn:
                stored = count()
                distinct = conn.execute(sa.text("SELECT COUNT(DISTINCT (station_id, metric, ts)) FROM readings "
                                                "WHERE metric = 'water_level'")).scalar_one()
            alive = service.alive
        finally:
            publisher.close()
            service.stop()
            engine.dispose()
    share_503 = statuses.count(503) / len(statuses)
    figure("/readyz while PostgreSQL was down", f"{statuses.count(503)} of {len(statuses)} answers 503, "
                                               f"others {sorted(set(statuses) - {503})}")
    figure("PostgreSQL back to /readyz 200", f"{ready_again_s:.1f} s")
    figure.summary(f"PostgreSQL down 30 s mid-stream: /readyz 503 in {share_503:.0%} of checks, 200 again "
                   f"{ready_again_s:.1f} s after restart; {stored} of {total} stored, {total - distinct} lost")
    assert alive
    assert share_503 >= 0.9  # the first check may race the stop
    assert stored == distinct == total
