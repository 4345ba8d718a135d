"""A database written by the first release (migration 0001) upgrades in place: its dead letters and tokens keep working."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.http import create_app
from service.seed import seed_if_empty
from service.tokens import create_token, hash_token
from tests.support.services import Clock, make_services

NOW = datetime.now(timezone.utc).replace(microsecond=0)
OLD_GATEWAY_TOKEN = "ews_" + "g" * 43
OLD_ADMIN_TOKEN = "ews_" + "a" * 43


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
    at = NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW
    with engine.begin() as conn:
        # A gateway token of the first release: any station, and a name that is no MQTT user name.
        conn.execute(sa.text("INSERT INTO api_tokens (name, role, token_hash, prefix, created_at)"
                             " VALUES ('gateway PKR-LASKAP', 'gateway', :hash, 'ews_old', :at),"
                             " ('Kalak BPBD', 'admin', :admin_hash, 'ews_adm', :at)"),
                     {"hash": hash_token(OLD_GATEWAY_TOKEN), "admin_hash": hash_token(OLD_ADMIN_TOKEN), "at": at})
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
    services = make_services(database_url, clock=Clock())  # upgrades to the newest revision
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


def test_a_first_release_gateway_token_learns_its_stations_for_a_week_then_is_held_to_them(upgraded, caplog):
    from service import tokens

    client = create_app(upgraded).test_client()
    gateway = {"Authorization": f"Bearer {OLD_GATEWAY_TOKEN}"}
    admin = {"Authorization": f"Bearer {OLD_ADMIN_TOKEN}"}
    [old] = [t for t in client.get("/api/v1/tokens", headers=admin).get_json()["items"] if t["role"] == "gateway"]
    assert old["stations"] == []
    learn_until = datetime.fromisoformat(old["stations_learn_until"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < learn_until - datetime.now(timezone.utc) <= timedelta(days=7)  # from the upgrade

    with caplog.at_level("WARNING", logger="service.tokens"):
        assert tokens.warn_legacy_gateway_tokens(upgraded.engine, NOW) == 1
    assert "re-issue" in caplog.text.lower() and "--station" in caplog.text

    def post(station: str, minutes: int) -> int:
        body = {"ts": iso(upgraded.clock() - timedelta(minutes=minutes)), "values": {"water_level": 1.0}}
        return client.post(f"/api/v1/stations/{station}/readings", headers=gateway, json=body).status_code

    # The office's real readings do not stop at the upgrade: the stations it posts for are learned.
    assert post("PKR-LASKAP", 3) == 200 and post("MLL-MALILI", 3) == 200 and post("PKR-LASKAP", 2) == 200
    [old] = [t for t in client.get("/api/v1/tokens", headers=admin).get_json()["items"] if t["role"] == "gateway"]
    assert old["stations"] == ["PKR-LASKAP", "MLL-MALILI"]

    # After the week the hole is closed: only the learned stations.
    upgraded.clock.now = learn_until + timedelta(seconds=1)
    assert post("PKR-LASKAP", 1) == 200
    assert post("KLN-WOTU", 1) == 403
