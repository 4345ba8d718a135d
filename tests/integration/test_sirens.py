"""Sirens in the database (spec section 12): commands stored before they are published, acks recorded,
re-sends with the same command_id on the controller's own timer, the staff-only ``siren`` alert.

The controller is driven pass by pass with explicit times; its publisher is the MQTT edge, recorded
here (tests/e2e/test_sirens_mqtt.py runs the same path through a real broker).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts import policy
from alerts.levels import Level
from service import alerting
from service.sirens import acks, controller as siren_controller, plan
from service.topic_messages import TopicMessage
from service.db.schema import alert_events, alerts, dead_letters, exercises, siren_commands, siren_state, stations
from config.templates import default_templates
from tests.support.ingest import iso, message
from tests.support.services import make_services, without_spike_check

SIREN = "SRN-WOTU-1"
TIMEOUT = 30.0


@pytest.fixture
def services(database_url):
    services = make_services(database_url)
    with services.engine.begin() as conn:
        conn.execute(sa.update(stations).where(stations.c.id == "KLN-WOTU").values(
            sirens=[{"id": SIREN, "at": "siaga", "upstream": False, "duration_s": 600}]))
    without_spike_check(services.engine, "KLN-WOTU")  # its test rivers jump; the sirens are under test
    yield services
    services.engine.dispose()


class Published:
    """The MQTT edge: what the controller handed to the broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        self.messages.append((topic, json.loads(payload)))
        return True

    def actions(self) -> list[tuple[str, str | None]]:
        return [(body["action"], body["level"]) for _, body in self.messages]


def controller(services, published) -> siren_controller.SirenController:
    return siren_controller.SirenController(services, published)


def sounding(services) -> tuple[siren_controller.SirenController, Published]:
    """A controller and what it publishes, with a siaga reading (the siren's level) stored 5 minutes ago."""
    published = Published()
    run = controller(services, published)
    levels(services, (3.6, 5))
    return run, published


def levels(services, *values_minutes_ago: tuple[float, float]) -> None:
    """Water levels at KLN-WOTU, each (value, minutes ago), in one batch each."""
    now = datetime.now(timezone.utc)
    for value, ago in values_minutes_ago:
        body = {"ts": iso(now - timedelta(minutes=ago)), "values": {"water_level": value}}
        services.ingestor.ingest([message("KLN-WOTU", body, now)])


def ack(services, command_id: str, state: str = "on", siren: str = SIREN, detail: str = "") -> int:
    prefix = services.settings.mqtt_topic_prefix
    payload = json.dumps({"command_id": command_id, "state": state, "detail": detail}).encode()
    return acks.record_acks(services, [TopicMessage(f"{prefix}/sirens/{siren}/ack", payload,
                                                       datetime.now(timezone.utc))])


def siren_row(services):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(siren_state).where(siren_state.c.siren_id == SIREN)).one()


def siren_alerts(services):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.kind == "siren").order_by(alerts.c.id)).all()


def test_on_at_the_configured_level_is_stored_published_and_acknowledged(services):
    published = Published()
    levels(services, (3.0, 10))  # waspada: below the siren's siaga
    now = datetime.now(timezone.utc)
    controller(services, published).run_once(now)
    assert published.messages == []
    levels(services, (3.6, 5))  # siaga
    controller(services, published).run_once(now)
    [(topic, body)] = published.messages
    assert topic == f"{services.settings.mqtt_topic_prefix}/sirens/{SIREN}/command"
    assert (body["action"], body["level"], body["duration_s"]) == ("on", "siaga", 600)
    with services.engine.connect() as conn:
        alert_id = conn.execute(sa.select(alerts.c.id).where(alerts.c.kind == "water_level",
                                                             alerts.c.state == "active")).scalar_one()
        command = conn.execute(sa.select(siren_commands)).one()
    assert body["alert_id"] == alert_id and body["command_id"] == command.command_id
    assert (command.status, command.attempts) == ("pending", 1)
    assert ack(services, body["command_id"]) == 1
    assert ack(services, body["command_id"]) == 0  # a redelivered ack changes nothing
    with services.engine.connect() as conn:
        command = conn.execute(sa.select(siren_commands)).one()
    row = siren_row(services)
    assert (command.status, command.ack["state"], row.state, row.last_ack["command_id"]) == (
        "acked", "on", "on", body["command_id"])
    controller(services, published).run_once(now + timedelta(seconds=5 * TIMEOUT))
    assert len(published.messages) == 1  # acknowledged: never re-sent


def test_off_when_the_alert_falls_below_the_level_and_on_again_at_a_higher_one(services):
    published = Published()
    run = controller(services, published)
    levels(services, (3.6, 30))
    run.run_once(datetime.now(timezone.utc))
    levels(services, (4.3, 25))  # awas: a new on, at the new level
    run.run_once(datetime.now(timezone.utc))
    levels(services, (3.0, 20), (3.0, 5))  # below siaga for clear_hold_s: waspada
    run.run_once(datetime.now(timezone.utc))
    assert published.actions() == [("on", "siaga"), ("on", "awas"), ("off", "waspada")]
    with services.engine.connect() as conn:
        statuses = conn.execute(sa.select(siren_commands.c.status).order_by(siren_commands.c.created_at)).scalars().all()
    assert statuses == ["superseded", "superseded", "pending"]  # an old on is never re-sent after the off


def test_on_is_renewed_before_duration_runs_out_while_the_alert_stays(services):
    run, published = sounding(services)
    start = datetime.now(timezone.utc)
    due = run.run_once(start)
    ack(services, published.messages[0][1]["command_id"])
    due = run.run_once(start + timedelta(seconds=1))
    lead = 4 * TIMEOUT
    assert due == start + timedelta(seconds=600 - lead)
    run.run_once(due - timedelta(seconds=1))
    assert len(published.messages) == 1
    run.run_once(due)
    assert [m[1]["action"] for m in published.messages] == ["on", "on"]
    assert published.messages[0][1]["command_id"] != published.messages[1][1]["command_id"]


def test_an_unanswered_command_is_resent_with_its_id_then_staff_get_the_siren_alert(services):
    run, published = sounding(services)
    start = datetime.now(timezone.utc)
    due = run.run_once(start)
    for attempt in range(1, 4):
        assert due == start + timedelta(seconds=attempt * TIMEOUT)
        assert run.run_once(due - timedelta(milliseconds=1)) == due  # not a moment early
        due = run.run_once(due)
    assert len({body["command_id"] for _, body in published.messages}) == 1
    assert len(published.messages) == 4 and {json.dumps(b) for _, b in published.messages} == {
        json.dumps(published.messages[0][1])}  # the same command, byte for byte
    assert siren_alerts(services) == []
    run.run_once(due)
    [alert] = siren_alerts(services)
    assert (alert.station_id, alert.state) == ("KLN-WOTU", "active")
    with services.engine.connect() as conn:
        event = conn.execute(sa.select(alert_events).where(alert_events.c.alert_id == alert.id)).one()
        command = conn.execute(sa.select(siren_commands)).one()
    assert (event.type, event.dispatch, event.reading["siren_id"], event.reading["problem"]) == (
        "raised", "pending", SIREN, "silent")
    assert command.status == "unanswered" and siren_row(services).trouble == "silent"
    # Staff only: the text names the siren; residents are never told (an operational kind).
    facts = policy.AlertFacts(kind="siren", peak=Level.WASPADA)
    told = policy.EventFacts(type=event.type, level=event.level, at=event.at, reading=event.reading)
    station = policy.StationFacts({"id": "KLN-WOTU", "name": "Pos TMA Kalaena Wotu"})
    rules = alerting.station_rules({"id": "KLN-WOTU", "rules": None})
    notice = policy.decide(facts, told, station, rules)
    assert (notice.kind, notice.residents, notice.staff) == ("operational", False, True)
    text = policy.notice_text(default_templates(), "id", notice, facts, told, station, rules, services.settings.tz)
    assert SIREN in text and "TIDAK MERESPON" in text
    # A late good ack ends it.
    ack(services, command.command_id, "on")
    [alert] = siren_alerts(services)
    assert alert.state == "closed" and siren_row(services).trouble is None


def test_an_error_ack_raises_the_siren_alert_and_the_next_good_ack_ends_it(services):
    run, published = sounding(services)
    run.run_once(datetime.now(timezone.utc))
    first = published.messages[0][1]["command_id"]
    ack(services, first, "error", detail="amplifier fuse")
    [alert] = siren_alerts(services)
    assert alert.state == "active" and siren_row(services).state == "error"
    levels(services, (4.3, 1))
    run.run_once(datetime.now(timezone.utc))
    ack(services, published.messages[1][1]["command_id"], "on")
    [alert] = siren_alerts(services)
    assert alert.state == "closed" and siren_row(services).state == "on"


def test_a_command_stored_but_never_published_goes_out_after_a_restart(services):
    levels(services, (3.6, 5))
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:  # the process died between its commit and its publish
        plan.plan(conn, now, TIMEOUT, apply=True)
    published = Published()
    controller(services, published).run_once(now + timedelta(seconds=1))
    with services.engine.connect() as conn:
        command_id = conn.execute(sa.select(siren_commands.c.command_id)).scalar_one()
    assert [body["command_id"] for _, body in published.messages] == [command_id]


def test_acks_that_name_no_command_of_that_siren_are_dead_letters(services):
    assert ack(services, "no-such-command") == 0
    prefix = services.settings.mqtt_topic_prefix
    acks.record_acks(services, [TopicMessage(f"{prefix}/sirens/{SIREN}/ack", b"{not json",
                                                datetime.now(timezone.utc))])
    with services.engine.connect() as conn:
        reasons = conn.execute(sa.select(dead_letters.c.reason).order_by(dead_letters.c.id)).scalars().all()
    assert reasons == ["unknown_command", "malformed_json"]


def test_a_drill_never_sounds_a_siren(services):
    published = Published()
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        drill = conn.execute(sa.insert(exercises).values(stations=["KLN-WOTU"], started_at=now,
                                                         until=now + timedelta(hours=1), created_by="test")
                             ).inserted_primary_key[0]
        conn.execute(sa.insert(alerts).values(station_id="KLN-WOTU", kind="water_level", level="awas",
                                              peak_level="awas", state="active", opened_at=now,
                                              exercise=True, exercise_id=drill))
    controller(services, published).run_once(now)
    assert published.messages == []  # a drill tests the chain with `test`, never with a real alarm


def open_alert(services, kind: str, level: str) -> int:
    with services.engine.begin() as conn:
        return conn.execute(sa.insert(alerts).values(station_id="KLN-WOTU", kind=kind, level=level, peak_level=level,
                                                     state="active", opened_at=datetime.now(timezone.utc))
                            ).inserted_primary_key[0]


def test_an_upstream_alert_sounds_only_the_sirens_that_say_upstream(services):
    with services.engine.begin() as conn:
        conn.execute(sa.update(stations).where(stations.c.id == "KLN-WOTU").values(sirens=[
            {"id": SIREN, "at": "siaga", "upstream": False}, {"id": "SRN-WOTU-2", "at": "siaga", "upstream": True}]))
    published = Published()
    wave = open_alert(services, "upstream", "awas")  # a flood wave from Mangkutana (spec section 11)
    controller(services, published).run_once(datetime.now(timezone.utc))
    assert [(topic.rsplit("/", 2)[1], body["action"], body["level"], body["alert_id"])
            for topic, body in published.messages] == [("SRN-WOTU-2", "on", "awas", wave)]
    with services.engine.begin() as conn:
        conn.execute(sa.update(alerts).where(alerts.c.id == wave).values(state="closed", level="normal"))
    controller(services, published).run_once(datetime.now(timezone.utc))
    assert published.messages[-1][0].endswith("/SRN-WOTU-2/command") and published.messages[-1][1]["action"] == "off"


def test_a_siren_removed_from_its_station_is_no_longer_commanded(services):
    run, published = sounding(services)
    start = datetime.now(timezone.utc)
    run.run_once(start)
    with services.engine.begin() as conn:
        conn.execute(sa.update(stations).where(stations.c.id == "KLN-WOTU").values(sirens=[]))
    run.run_once(start + timedelta(seconds=10 * TIMEOUT))
    assert len(published.messages) == 1 and siren_alerts(services) == []
    with services.engine.connect() as conn:
        assert conn.execute(sa.select(siren_commands.c.status)).scalar_one() == "superseded"


def test_siren_figures_are_counted(services):
    run, published = sounding(services)
    start = datetime.now(timezone.utc)
    for step in range(5):
        run.run_once(start + timedelta(seconds=step * TIMEOUT))
    metrics = services.metrics
    assert metrics.siren_published.labels("first")._value.get() == 1
    assert metrics.siren_published.labels("again")._value.get() == 3
    assert metrics.siren_unanswered._value.get() == 1
    ack(services, published.messages[0][1]["command_id"], "on")
    assert metrics.siren_acks.labels("on")._value.get() == 1
