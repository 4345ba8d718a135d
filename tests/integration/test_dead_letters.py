"""Dead letters cannot fill the disk and nothing is thrown away that could be replayed (spec section 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from service.db.schema import alerts, dead_letters, station_state, stations
from service.http import create_app
from service.tokens import create_token
from tests.support.ingest import iso, message, stored
from tests.support.services import make_services

ROOT = Path(__file__).resolve().parents[2]


def letters(services) -> list[dict]:
    with services.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(dead_letters).order_by(dead_letters.c.id)).mappings()]


def table_bytes(services) -> int:
    with services.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.sum(dead_letters.c.size_bytes), 0))).scalar_one()


def recent(minutes: float = 1) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=minutes)


def test_one_rejected_payload_is_one_dead_letter_listing_its_bad_samples(services):
    # The issue: one 256 KiB payload of unknown metrics wrote ~25,000 dead-letter rows.
    ts = recent()
    body = [{"ts": iso(ts - timedelta(seconds=i)), "values": {f"m{j}": 1 for j in range(3)}} for i in range(1000)]
    body[10]["values"] = {"water_level": 1.5}  # one good sample among them
    sent = message("PKR-LASKAP", body)
    result = services.ingestor.ingest([sent])[0]
    assert len(result.accepted) == 1 and len(result.rejected) == 2997
    [letter] = letters(services)
    assert letter["rejected_count"] == 2997 and len(letter["rejections"]) == 1000
    assert letter["rejections"][0] == {"index": 0, "metric": "m0", "reason": "unknown_metric",
                                       "detail": letter["rejections"][0]["detail"], "ts": iso(ts)}
    assert letter["rejections"][-1]["index"] == 334  # the 1,000th of 2,997, skipping the good sample 10
    assert letter["payload"].encode() == sent.payload and not letter["truncated"]  # whole, for replay
    assert letter["payload_bytes"] == len(sent.payload)
    assert letter["reason"] == "unknown_metric" and letter["reasons"].split() == ["unknown_metric"]


def test_a_payload_too_large_is_kept_up_to_256_kib(services):
    services.ingestor.ingest([message("PKR-LASKAP", b"[" + b" " * (300 * 1024) + b"]")])
    [letter] = letters(services)
    assert letter["reason"] == "too_large" and letter["truncated"]
    assert len(letter["payload"]) == 256 * 1024 and letter["payload_bytes"] == 300 * 1024 + 2


def test_hostile_strings_are_stored_on_postgresql_too(services):
    raw = b'{"ts": "\\u0000\\ud800", "values": {}}', b'{"ts": 1, "values": {"\\u0000\\udfff": 1}}'
    ts = iso(recent())
    raw += (('{"ts": "%s", "values": {"\\u0000\\ud800": 1, "water_level": 1.0}}' % ts).encode(),)
    results = services.ingestor.ingest([message("PKR-LASKAP", body) for body in raw])
    assert [r.rejected[0].reason for r in results] == ["bad_timestamp", "ts_too_old", "unknown_metric"]
    assert [letter["reason"] for letter in letters(services)] == ["bad_timestamp", "ts_too_old", "unknown_metric"]


def test_the_cap_drops_the_oldest_first_and_counts_it(database_url):
    services = make_services(database_url, EWS_DEAD_LETTER_MAX_MB="1")
    try:
        junk = [message("PKR-LASKAP", b"{" + bytes([65 + i]) * (150 * 1024)) for i in range(12)]
        for item in junk:  # 12 x 150 KiB of malformed JSON: 1.8 MB against a 1 MB cap
            services.ingestor.ingest([item])
        kept = letters(services)
        cap = 1024 * 1024
        assert table_bytes(services) <= cap + services.ingestor.dead_letter_cap.check_every
        assert 4 <= len(kept) < 12
        assert [letter["payload"][1] for letter in kept] == [chr(65 + i) for i in range(12 - len(kept), 12)]  # newest stay
        dropped = services.metrics.dead_letters_dropped._value.get()
        assert dropped == 12 - len(kept)
        body = create_app(services).test_client().get("/metrics").get_data(as_text=True)
        assert f"ews_dead_letters_dropped_total {float(dropped)}" in body
        assert "ews_dead_letters_bytes " in body
    finally:
        services.engine.dispose()


def test_the_api_lists_the_new_shape_and_filters_by_any_reason(services):
    ts = iso(recent())
    services.ingestor.ingest([message("PKR-LASKAP", [{"ts": ts, "values": {"depth": 1}},
                                                      {"ts": ts, "values": {"water_level": 99}}])])
    app = create_app(services)
    token = create_token(services.engine, "viewer", "reader")[1]
    client = app.test_client()

    def get(query: str) -> list[dict]:
        answer = client.get(f"/api/v1/dead-letters{query}", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer.get_json()["items"]

    [item] = get("")
    # What clients read before is still there: one reason (the first), a detail, the payload.
    assert item["reason"] == "unknown_metric" and "1 more rejection" in item["detail"]
    assert item["reasons"] == ["unknown_metric", "out_of_range"] and item["rejected_count"] == 2
    assert [(r["index"], r["metric"], r["reason"]) for r in item["rejections"]] == [
        (0, "depth", "unknown_metric"), (1, "water_level", "out_of_range")]
    assert item["truncated"] is False and item["replayed_at"] is None and item["replay"] is None
    assert [i["id"] for i in get("?reason=out_of_range")] == [item["id"]]
    assert get("?reason=out_of_rang") == [] and get("?reason=%25") == []
    assert get("?replayed=true") == [] and len(get("?replayed=false")) == 1


def replay_cli(database_url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EWS_")}
    env["EWS_DATABASE_URL"] = database_url
    done = subprocess.run([sys.executable, "-m", "service.cli", "dead-letters", "replay", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def add_station(services, station_id: str) -> None:
    with services.engine.begin() as conn:
        row = dict(conn.execute(sa.select(stations).where(stations.c.id == "PKR-LASKAP")).mappings().one())
        conn.execute(sa.insert(stations).values({**row, "id": station_id, "name": f"Pos {station_id}"}))


def test_replay_stores_an_unknown_stations_samples_once_it_is_registered(services, database_url):
    start = recent(60)
    body = [{"ts": iso(start + timedelta(minutes=10 * i)), "values": {"water_level": 1.0 + i / 10}} for i in range(5)]
    services.ingestor.ingest([message("PKR-BARU", body), message("PKR-BARU", body[:2]),
                              message("PKR-LASKAP", b"junk")])
    assert replay_cli(database_url, "--station", "PKR-BARU").startswith(
        "replayed 2 dead letter(s): 0 sample(s) stored, 0 duplicate(s), 2 rejected again (unknown_station 2)")
    assert all(letter["replayed_at"] is None for letter in letters(services))  # not used up before registering

    add_station(services, "PKR-BARU")
    out = replay_cli(database_url, "--station", "PKR-BARU")
    assert out == "replayed 2 dead letter(s): 5 sample(s) stored, 2 duplicate(s), 0 rejected again"
    assert [v for _, v in stored(services, "PKR-BARU", "water_level")] == [1.0, 1.1, 1.2, 1.3, 1.4]
    marked = [letter for letter in letters(services) if letter["station_id"] == "PKR-BARU"]
    assert all(letter["replayed_at"] is not None for letter in marked)
    assert marked[0]["replay"] == {"stored": 5, "duplicates": 0, "rejected": 0, "reasons": []}

    again = replay_cli(database_url, "--station", "PKR-BARU")
    assert again == "replayed 0 dead letter(s): 0 sample(s) stored, 0 duplicate(s), 0 rejected again"
    assert len(stored(services, "PKR-BARU", "water_level")) == 5
    untouched = [letter for letter in letters(services) if letter["station_id"] == "PKR-LASKAP"]
    assert untouched[0]["replayed_at"] is None  # --station: only that station's


def test_replay_filters_by_reason_and_time_and_reports_rejected_again(services, database_url):
    old = datetime.now(timezone.utc) - timedelta(hours=5)
    ts = iso(recent())
    services.ingestor.ingest([message("MLL-MALILI", {"ts": ts, "values": {"depth": 1}}, received_at=old)])
    services.ingestor.ingest([message("MLL-MALILI", {"ts": ts, "values": {"water_level": 50}})])
    since = iso(datetime.now(timezone.utc) - timedelta(hours=1))
    assert replay_cli(database_url, "--reason", "unknown_metric", "--since", since).startswith("replayed 0 ")
    out = replay_cli(database_url, "--reason", "out_of_range")
    assert out == "replayed 1 dead letter(s): 0 sample(s) stored, 0 duplicate(s), 1 rejected again (out_of_range 1)"
    assert [letter["replay"] for letter in letters(services) if letter["replayed_at"]] == [
        {"stored": 0, "duplicates": 0, "rejected": 1, "reasons": ["out_of_range"]}]
    assert len(letters(services)) == 2  # a replay's rejections are no new dead letters


def test_a_replay_of_old_samples_does_not_bring_an_offline_station_back(services):
    from service import alerting
    from service.replay import replay

    arrived = datetime.now(timezone.utc) - timedelta(minutes=45)
    services.ingestor.ingest([message("KLN-WOTU", {"ts": iso(recent(50)), "values": {"rainfall": 2.5}},
                                      received_at=arrived)])
    services.ingestor.ingest([message("KLN-WOTU", {"ts": iso(recent(40)), "values": {"water_level": 1.0}})])
    assert alerting.check_offline(services.engine, datetime.now(timezone.utc) + timedelta(hours=2)) == 1
    with services.engine.connect() as conn:
        seen = conn.execute(sa.select(station_state.c.last_seen).where(station_state.c.station_id == "KLN-WOTU")).scalar_one()
    with services.engine.begin() as conn:  # the station's rain gauge is configured after the fact, then replayed
        conn.execute(sa.update(stations).where(stations.c.id == "KLN-WOTU")
                     .values(metrics=["water_level", "rainfall", "battery", "signal"]))
    services.ingestor.forget_stations()
    assert replay(services, station="KLN-WOTU").stored == 1
    assert [value for _, value in stored(services, "KLN-WOTU", "rainfall")] == [2.5]
    with services.engine.connect() as conn:
        state = conn.execute(sa.select(station_state).where(station_state.c.station_id == "KLN-WOTU")).one()
        offline = conn.execute(sa.select(alerts.c.state).where(alerts.c.kind == "offline")).scalar_one()
    assert offline == "active" and state.online is False  # old samples: still offline
    assert state.last_seen == seen  # and last_seen never goes back
