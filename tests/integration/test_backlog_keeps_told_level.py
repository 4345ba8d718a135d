"""A backlog that arrives after a live reading does not retract what residents were told (spec section 17).

The BENCH-001 sequence of a real ``ews bench latency --backlog 100000`` run: a live 1.96 m accepted in
order raised WASPADA (rise rate); the gateway's backlog of the minutes before it came on the backlog
topic afterwards. In measurement order the 1.96 m follows 0.281 m, a step the check doubts: the replay
held it back and told residents the river was back to normal while it stood at 1.96 m and rose to 2.5 m.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service import alerting
from service.db.schema import alert_events, alerts, readings
from service.ingest import Message
from tests.integration.test_resume_property import add_station
from tests.support.ingest import iso, message
from tests.support.services import make_services

STATION = "BENCH-001"
LATE_1 = [0.329, 0.318, 0.329, 0.331, 0.332, 0.324, 0.322, 0.311, 0.317, 0.298, 0.281]  # 00:15 .. 00:25
LATE_2 = [0.27, 0.287, 0.273, 0.285, 0.266, 0.279, 0.266, 0.251]  # 00:26 .. 00:33
RISING = [1.96, 1.95, 1.955, 2.03, 2.08, 2.12, 2.175, 2.23, 2.27, 2.325, 2.38, 2.42, 2.455, 2.53]


@pytest.fixture
def services(database_url):
    services = make_services(database_url, seed=None)
    add_station(services, STATION, 60)  # the defaults (config/rules/defaults.json), a sample a minute
    yield services
    services.engine.dispose()


def body(t0: datetime, first_minute: int, values) -> list[dict]:
    return [{"ts": iso(t0 + timedelta(minutes=first_minute + i)), "values": {"water_level": v}}
            for i, v in enumerate(values)]


def backlog(payload, received_at: datetime) -> Message:
    raw = message(STATION, payload, received_at)
    return Message(topic=raw.topic.replace("/readings", "/backlog"), payload=raw.payload, received_at=received_at)


def told(services) -> list[tuple]:
    with services.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(alerts.c.kind, alert_events.c.type, alert_events.c.level, alert_events.c.dispatch)
            .join(alerts, alerts.c.id == alert_events.c.alert_id)
            .where(alerts.c.station_id == STATION).order_by(alert_events.c.id))]


def ingest(services, msg: Message) -> None:
    (result,) = services.ingestor.ingest([msg])
    assert not result.rejected, result.rejected


def test_a_late_backlog_does_not_clear_a_told_water_level(services):
    t0 = datetime.now(timezone.utc).replace(second=9, microsecond=0) - timedelta(hours=2)  # "00:00:09"
    live_at = t0 + timedelta(minutes=39, seconds=23.381894)  # 00:39:32.381894
    ingest(services, backlog(body(t0, -60, [0.33] * 75), live_at - timedelta(seconds=1)))  # 23:00 .. 00:14
    ingest(services, message(STATION, {"ts": iso(live_at), "values": {"water_level": 1.96}}, live_at))
    assert told(services) == [("water_level", "raised", "waspada", "pending")]  # residents are warned
    ingest(services, backlog(body(t0, 15, LATE_1), live_at))
    ingest(services, backlog(body(t0, 26, LATE_2), live_at))
    print("TOLD", told(services)); assert told(services) == [("water_level", "raised", "waspada", "pending")]  # no all-clear, no doubt after the fact
    for i, value in enumerate(RISING):
        at = live_at + timedelta(seconds=1.1 + 0.1 * i)
        ingest(services, message(STATION, {"ts": iso(at), "values": {"water_level": value}}, at))
    assert told(services) == [("water_level", "raised", "waspada", "pending"),
                              ("water_level", "escalated", "siaga", "pending")]
    with services.engine.connect() as conn:
        state = conn.execute(sa.select(alerts.c.state).where(alerts.c.station_id == STATION)).scalar_one()
        marks = conn.execute(sa.select(readings.c.quality).where(
            readings.c.station_id == STATION, readings.c.ts == live_at)).scalar_one()
    assert (state, marks) == ("active", "good")


def test_a_forgotten_state_resumes_with_the_kept_decision(services):
    # The same after the held state is dropped (a batch that did not commit): the kept decision is in the row.
    t0 = datetime.now(timezone.utc).replace(second=9, microsecond=0) - timedelta(hours=2)
    live_at = t0 + timedelta(minutes=39, seconds=23.381894)
    ingest(services, backlog(body(t0, -60, [0.33] * 75), live_at - timedelta(seconds=1)))
    ingest(services, message(STATION, {"ts": iso(live_at), "values": {"water_level": 1.96}}, live_at))
    ingest(services, backlog(body(t0, 15, LATE_1 + LATE_2), live_at))
    services.ingestor.states.forget([STATION])
    at = live_at + timedelta(seconds=1.1)
    ingest(services, message(STATION, {"ts": iso(at), "values": {"water_level": 1.96}}, at))
    assert told(services) == [("water_level", "raised", "waspada", "pending")]


def test_a_warning_judged_as_it_is_is_not_taken_back_by_a_late_backlog(services):
    # A jump held back as doubtful, judged as it is by the scheduled check when the station fell silent
    # (residents warned); the gateway's backlog then brings a sample 30 s after it, back where it was.
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=2)
    ingest(services, backlog(body(t0, -60, [1.0] * 60), t0))
    ingest(services, message(STATION, {"ts": iso(t0), "values": {"water_level": 2.3}}, t0))
    assert [e[:3] for e in told(services)] == [("sensor", "raised", "waspada")]  # staff see the doubt, residents nothing
    assert alerting.judge_overdue(services.engine, t0 + timedelta(minutes=10)) == 1
    assert ("water_level", "raised", "waspada", "pending") in told(services)  # judged as it is: residents are warned
    ingest(services, backlog(body(t0 + timedelta(seconds=30), 0, [1.02]), t0 + timedelta(minutes=11)))
    assert [e for e in told(services) if e[0] == "water_level"] == [("water_level", "raised", "waspada", "pending")]
    with services.engine.connect() as conn:
        mark = conn.execute(sa.select(readings.c.quality).where(
            readings.c.station_id == STATION, readings.c.ts == t0)).scalar_one()
    assert mark == "doubtful"  # judged as it is, never confirmed: not a spike after the fact
