"""A database written by the first release (migration 0001) upgrades in place: its dead letters keep working."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.http import create_app
from service.seed import seed_if_empty
from service.tokens import create_token
from tests.support.services import make_services

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def first_release_rows(engine) -> None:
    """Rows as the first release wrote them: one dead letter per rejection, payloads cut at 4 KiB."""
    whole = json.dumps([{"ts": iso(NOW - timedelta(minutes=5)), "values": {"water_level": 1.2, "depth": 3}}])
    cut = json.dumps([{"ts": iso(NOW), "values": {"water_level": 1.0}}] * 100)[:4096]
    rows = [
        ("mqtt", "ews/v1/stations/PKR-LASKAP/readings", "PKR-LASKAP", "unknown_metric", "'depth' is not ... (metric=depth)", whole),
        ("mqtt", "ews/v1/stations/PKR-LASKAP/readings", "PKR-LASKAP", "unknown_metric", "'depth' is not ... (metric=depth)", whole),
        ("http", "ews/v1/stations/MLL-MALILI/readings", "MLL-MALILI", "out_of_range", "99 is outside [0, 10]", cut),
    ]
    with engine.begin() as conn:
        for source, topic, station, reason, detail, payload in rows:
            conn.execute(sa.text("INSERT INTO dead_letters (received_at, source, topic, station_id, reason, detail, payload)"
                                 " VALUES (:at, :source, :topic, :station, :reason, :detail, :payload)"),
                         {"at": NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW, "source": source,
                          "topic": topic, "station": station, "reason": reason, "detail": detail, "payload": payload})


@pytest.fixture
def upgraded(database_url):
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    seed_if_empty(engine, "luwu-timur", NOW)
    first_release_rows(engine)
    engine.dispose()
    services = make_services(database_url)  # upgrades to the newest revision
    yield services
    services.engine.dispose()


def test_dead_letters_of_the_first_release_are_listed_filtered_and_replayed(upgraded):
    client = create_app(upgraded).test_client()
    headers = {"Authorization": f"Bearer {create_token(upgraded.engine, 'viewer', 'reader')[1]}"}
    items = client.get("/api/v1/dead-letters", headers=headers).get_json()["items"]
    assert [i["reason"] for i in items] == ["out_of_range", "unknown_metric", "unknown_metric"]
    assert items[0]["reasons"] == ["out_of_range"] and items[0]["rejected_count"] == 1
    assert items[0]["rejections"] == [{"index": None, "metric": None, "reason": "out_of_range",
                                       "detail": "99 is outside [0, 10]"}]
    assert items[0]["truncated"] is True and items[1]["truncated"] is False  # the 4 KiB cut is not replayed
    assert items[0]["payload_bytes"] is None  # unknown: written by the first release
    only = client.get("/api/v1/dead-letters?reason=unknown_metric", headers=headers).get_json()["items"]
    assert len(only) == 2

    from service.replay import replay

    report = replay(upgraded)
    # The two copies of one payload (one per rejection then) are ingested once: 1 sample stored.
    assert (report.dead_letters, report.stored, report.rejected, report.skipped_truncated) == (1, 1, 1, 1)
    after = client.get("/api/v1/dead-letters?replayed=false", headers=headers).get_json()["items"]
    assert after == []
    with upgraded.engine.connect() as conn:
        size = conn.execute(sa.text("SELECT SUM(size_bytes) FROM dead_letters")).scalar_one()
    assert size > 4096  # counted against EWS_DEAD_LETTER_MAX_MB
