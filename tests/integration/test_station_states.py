"""Engine states held in memory (service/station_states.py): delta writes, versions, exact resumption."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts import engine
from service import alerting, station_states
from service.db.schema import alert_events, alerts, station_state, stations
from tests.support.ingest import iso, message
from tests.support.services import make_services

STATION = "MLL-MALILI"


def hydrograph(start: datetime) -> list[dict]:
    """18 hours of water levels every 10 minutes: a flood that rises through AWAS and falls."""
    return [{"ts": iso(start + timedelta(minutes=10 * i)),
             "values": {"water_level": round(1.2 + 3.4 * math.sin(math.pi * i / 108) ** 2, 3)}}
            for i in range(108)]


def event_levels(services) -> list[tuple[str, str]]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(alert_events.c.type, alert_events.c.level)
                            .join(alerts, alerts.c.id == alert_events.c.alert_id)
                            .where(alerts.c.station_id == STATION, alerts.c.kind == "water_level")
                            .order_by(alert_events.c.id)).all()
    return [(row.type, row.level) for row in rows]


def expected_levels(services, batches: list[list[dict]], expected_interval_s: int | None = None) -> list[str]:
    """The levels the pure engine moves through when judging the same batches."""
    with services.engine.connect() as conn:
        rules = alerting.station_rules(conn.execute(sa.select(stations).where(stations.c.id == STATION)).one()._mapping)
    state, levels = None, []
    for batch in batches:
        samples = [engine_sample(item) for item in batch]
        judgement = engine.judge(rules, state, samples, expected_interval_s=expected_interval_s)
        state = judgement.state
        levels.extend(e.level.label for e in judgement.events if e.kind == "water_level")
    return levels


def engine_sample(item: dict):
    from alerts.model import Sample

    ts = datetime.fromisoformat(item["ts"].replace("Z", "+00:00"))
    return Sample(STATION, "water_level", ts, item["values"]["water_level"])


def stored_state(services) -> dict:
    with services.engine.connect() as conn:
        row = conn.execute(sa.select(station_state).where(station_state.c.station_id == STATION)).one()
    return dict(row._mapping)


@pytest.fixture
def start():
    return datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=20)


def test_the_state_row_holds_a_checkpoint_and_a_small_delta(services, start):
    items = hydrograph(start)
    for i in range(0, 102, 6):
        services.ingestor.ingest([message(STATION, items[i:i + 6])])
    row = stored_state(services)
    assert "current" not in row["engine"] and "horizon" not in row["engine"]  # a checkpoint, not a whole state
    assert row["engine"]["base_key"] is not None
    behind = row["engine_delta"]["base_key"][0] - row["engine"]["base_key"][0]
    assert 0 <= behind < station_states.CHECKPOINT_S * 1_000_000
    assert row["version"] == 17
    services.ingestor.ingest([message(STATION, items[102:103])])
    after = stored_state(services)
    assert after["engine"] == row["engine"] or behind + 600_000_000 >= station_states.CHECKPOINT_S * 1_000_000
    assert after["engine_delta"]["base_key"] != row["engine_delta"]["base_key"]
    assert after["version"] == 18


def test_instances_taking_turns_judge_as_one_and_a_restart_resumes_exactly(database_url, start):
    # Three ingest instances on one database (two at first; a third starts, as after a restart),
    # taking a station's batches in turn, as a shared subscription hands them out; one sample
    # arrives late (inside the horizon) and one too late to be judged (older than the horizon).
    instances = [make_services(database_url) for _ in range(2)]
    items = hydrograph(start)
    batches = [items[i:i + 5] for i in range(0, 100, 5)]
    late = batches[10].pop(2)
    batches[12].append(late)
    too_late = batches[3].pop(0)
    batches[19].append(too_late)
    batches.append(items[100:])
    try:
        for number, batch in enumerate(batches):
            if number == 14:
                instances.append(make_services(database_url))  # a new process: nothing held yet
            instances[number % len(instances)].ingestor.ingest([message(STATION, batch)])
        observed = event_levels(instances[0])
        assert [level for _, level in observed] == expected_levels(instances[0], batches)
        assert "awas" in [level for _, level in observed]
        assert observed[-1] == ("cleared", "normal")
    finally:
        for services in instances:
            services.engine.dispose()


def test_a_write_by_another_writer_is_seen(services, start):
    # The offline check changes the row (online = false) outside ingest: the next batch must see it
    # (the held state says online) and end the offline alert.
    items = hydrograph(start)
    services.ingestor.ingest([message(STATION, items[:3])])
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert alerting.check_offline(services.engine, later) >= 1
    services.ingestor.ingest([message(STATION, items[3:4])])
    with services.engine.connect() as conn:
        offline = conn.execute(sa.select(alerts.c.state).where(alerts.c.station_id == STATION,
                                                              alerts.c.kind == "offline")).scalars().all()
    assert offline == ["closed"]
    assert stored_state(services)["online"] is True


def test_a_batch_that_does_not_commit_leaves_nothing_held(services, start, monkeypatch):
    items = hydrograph(start)
    services.ingestor.ingest([message(STATION, items[:3])])
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(station_states.StationStates, "write", broken)
    services.ingestor.ingest([message(STATION, items[3:40])])  # dead-lettered: nothing stored
    monkeypatch.undo()
    assert services.ingestor.states._held == {}
    for i in range(3, 108, 6):
        services.ingestor.ingest([message(STATION, items[i:i + 6])])
    assert [level for _, level in event_levels(services)] == expected_levels(
        services, [items[:3]] + [items[i:i + 6] for i in range(3, 108, 6)])


def test_a_state_resumed_after_a_failed_batch_holds_doubtful_samples_by_the_station_s_interval(services, start):
    # A station sampling every minute: a held doubtful sample is overdue after 2 minutes. The sample
    # 5 minutes after a jump to SIAGA finds the jump judged as it is, and the river's fall ends the
    # alert. A state rebuilt after a failed batch with the default 10 minutes called the jump a spike:
    # its level was normal while the alert stayed open, and the fall told no one the all-clear.
    with services.engine.begin() as conn:
        conn.execute(sa.update(stations).where(stations.c.id == STATION).values(expected_interval_s=60))
    services.ingestor.forget_stations()
    batches = [[(10 * i, 1.0) for i in range(10)] + [(100, 3.6)], [(105, 1.0)], [(110, 1.0)], [(125, 1.0)]]
    batches = [[{"ts": iso(start + timedelta(minutes=m)), "values": {"water_level": v}} for m, v in batch]
               for batch in batches]
    for batch in batches:
        services.ingestor.states.forget()  # as after a batch that did not commit
        services.ingestor.ingest([message(STATION, batch)])
    assert event_levels(services) == [("raised", "siaga"), ("cleared", "normal")]
    assert expected_levels(services, batches, expected_interval_s=60) == ["siaga", "normal"]
