"""Sirens through a real broker (spec section 12), against ``ews run`` as a process: siren controllers
(real MQTT clients) receive ``on`` at the configured level and ``off`` below it or when the alert
closes; acks are recorded; a silent controller gets the same ``command_id`` again, then staff (not
residents) get the operational ``siren`` alert; a good ack ends it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import subscribers
from service.db.schema import alerts, notifications, siren_commands, siren_state
from tests.support.infra import wait_until
from tests.support.ingest import iso
from tests.support.mqtt import Publisher
from tests.support.service_process import ProcessApi, ServiceProcess
from tests.support.siren_controller import TestSirenController

pytestmark = [pytest.mark.broker, pytest.mark.slow]

TIMEOUT_S = 1.0


def rows(engine, query):
    with engine.connect() as conn:
        return conn.execute(query).all()


@pytest.fixture
def service(tmp_path, broker_url, topic_prefix):
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    process = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur", "EWS_SIREN_ACK_TIMEOUT_S": str(TIMEOUT_S),
                                  "EWS_LEADER_LEASE_S": "3", "EWS_LOG_LEVEL": "INFO"})
    process.start()
    process.engine = sa.create_engine(database_url)
    yield process
    process.stop()
    process.engine.dispose()


def levels(publisher: Publisher, prefix: str, *values_minutes_ago: tuple[float, float]) -> None:
    now = datetime.now(timezone.utc)
    for value, ago in values_minutes_ago:
        publisher.publish(f"{prefix}/stations/KLN-WOTU/readings",
                          {"ts": iso(now - timedelta(minutes=ago)), "values": {"water_level": value}})
    publisher.wait_all()


def test_controllers_get_on_and_off_a_silent_one_is_retried_then_staff_are_told(service, broker_url, topic_prefix):
    ProcessApi(service).json("PATCH", "/stations/KLN-WOTU", {"sirens": [{"id": "SRN-WOTU-1", "at": "siaga"},
                                                                     {"id": "SRN-WOTU-2", "at": "awas"}]})
    # This river steps faster than quality.max_step_per_min (spec 17); the sirens, not spikes, are under test.
    ProcessApi(service).json("PATCH", "/stations/KLN-WOTU/rules", {"quality": {"max_step_per_min": None}})
    now = datetime.now(timezone.utc)
    with service.engine.begin() as conn:
        staff = subscribers.create(conn, {"phone": "+6281200000001", "areas": [{"kecamatan": "Wotu"}],
                                          "role": "staff"}, now).id
        resident = subscribers.create(conn, {"phone": "+6281200000002", "areas": [{"kecamatan": "Wotu",
                                             "desa": "Kalaena"}], "role": "resident"}, now).id
    answering = TestSirenController(broker_url, topic_prefix, "SRN-WOTU-1")
    silent = TestSirenController(broker_url, topic_prefix, "SRN-WOTU-2", silent=True)
    publisher = Publisher(broker_url)
    try:
        # SIAGA: the siaga siren sounds, the awas one stays quiet.
        levels(publisher, topic_prefix, (3.6, 60))
        [on] = wait_until(lambda: answering.received(), 20, "the on command")
        assert (on["action"], on["level"], on["duration_s"]) == ("on", "siaga", 600)
        assert set(on) == {"command_id", "action", "level", "duration_s", "alert_id", "sent_at", "expires_at"}
        assert datetime.fromisoformat(on["expires_at"].replace("Z", "+00:00")) > datetime.fromisoformat(
            on["sent_at"].replace("Z", "+00:00"))
        wait_until(lambda: rows(service.engine, sa.select(siren_commands.c.status).where(
            siren_commands.c.command_id == on["command_id"])) == [("acked",)], 20, "the ack recorded")
        assert silent.received() == []

        # AWAS: the silent siren gets its command 1 + 3 times with one command_id, then staff are told.
        levels(publisher, topic_prefix, (4.3, 55))
        wait_until(lambda: len(silent.received()) >= 4, 30, "the command and its three re-sends")
        received = silent.received()
        assert {c["command_id"] for c in received} == {received[0]["command_id"]} and received[0]["level"] == "awas"
        [siren_alert] = wait_until(lambda: rows(service.engine, sa.select(alerts.c.id, alerts.c.station_id).where(
            alerts.c.kind == "siren", alerts.c.state == "active")), 20, "the siren alert")
        assert siren_alert.station_id == "KLN-WOTU"
        told = wait_until(lambda: rows(service.engine, sa.select(notifications.c.subscriber_id, notifications.c.kind,
                                                                  notifications.c.body).where(
            notifications.c.alert_id == siren_alert.id)), 30, "the staff message")
        assert [(t.subscriber_id, t.kind) for t in told] == [(staff, "operational")]  # never the resident
        assert "SRN-WOTU-2" in told[0].body and "TIDAK MERESPON" in told[0].body
        assert len(silent.received()) == 4  # given up: no fifth copy

        # A good ack (late) ends it; the controller answers from now on.
        silent.silent = False
        silent.answer(received[0])
        wait_until(lambda: rows(service.engine, sa.select(alerts.c.state).where(alerts.c.id == siren_alert.id))
                   == [("closed",)], 20, "the siren alert to end")

        # Below awas for clear_hold_s: the awas siren goes off, the siaga one keeps sounding (a new on at siaga).
        levels(publisher, topic_prefix, (3.6, 50), (3.6, 38))
        wait_until(lambda: silent.received()[-1]["action"] == "off", 20, "off for the awas siren")
        wait_until(lambda: answering.received()[-1]["level"] == "siaga" and len(answering.received()) == 3, 20,
                   "on at siaga again")
        # The alert closes: off.
        levels(publisher, topic_prefix, (1.0, 30), (1.0, 15))
        wait_until(lambda: answering.received()[-1]["action"] == "off", 20, "off when the alert closes")
        wait_until(lambda: rows(service.engine, sa.select(siren_state.c.siren_id, siren_state.c.state)
                                .order_by(siren_state.c.siren_id)) == [("SRN-WOTU-1", "off"), ("SRN-WOTU-2", "off")],
                   20, "both sirens acknowledged off")
        assert [(c["action"], c["level"]) for c in answering.received()] == [
            ("on", "siaga"), ("on", "awas"), ("on", "siaga"), ("off", None)]
    finally:
        publisher.close()
        answering.close()
        silent.close()


def test_a_wave_from_upstream_sounds_the_sirens_that_say_upstream(service, broker_url, topic_prefix):
    """KLN-MANGKUTANA at SIAGA opens KLN-WOTU's upstream alert (spec section 11): only its upstream siren sounds;
    the source closing closes the wave, and the siren goes off."""
    ProcessApi(service).json("PATCH", "/stations/KLN-WOTU", {"sirens": [
        {"id": "SRN-WOTU-W", "at": "siaga", "upstream": True}, {"id": "SRN-WOTU-L", "at": "siaga"}]})
    wave = TestSirenController(broker_url, topic_prefix, "SRN-WOTU-W")
    local = TestSirenController(broker_url, topic_prefix, "SRN-WOTU-L")
    publisher = Publisher(broker_url)
    now = datetime.now(timezone.utc)

    def at_mangkutana(*values_minutes_ago):
        for value, ago in values_minutes_ago:
            publisher.publish(f"{topic_prefix}/stations/KLN-MANGKUTANA/readings",
                              {"ts": iso(now - timedelta(minutes=ago)), "values": {"water_level": value}})
        publisher.wait_all()

    try:
        at_mangkutana((3.2, 60))
        [on] = wait_until(lambda: wave.received(), 30, "on for the wave")
        [upstream] = rows(service.engine, sa.select(alerts.c.id, alerts.c.level).where(
            alerts.c.station_id == "KLN-WOTU", alerts.c.kind == "upstream", alerts.c.state == "active"))
        assert (on["action"], on["level"], on["alert_id"]) == ("on", "siaga", upstream.id)
        at_mangkutana((1.0, 40), (1.0, 20))  # the source closes, and with it the wave
        wait_until(lambda: wave.received()[-1]["action"] == "off", 30, "off when the wave closes")
        assert local.received() == []  # the station's own river never rose
    finally:
        publisher.close()
        wave.close()
        local.close()
