"""A flood replayed through MQTT gives exactly the expected alert events, also when the service is killed midway."""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.mqtt import Publisher
from tests.support.service_process import ServiceProcess, sqlite_count

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary (apt-get install mosquitto)")]

STATION = "PKR-LASKAP"  # thresholds 1.8 / 2.4 / 3.0 m, clear margin 0.1 m, clear hold 600 s
EXPECTED = [
    ("water_level", "raised", "waspada"),
    ("water_level", "escalated", "siaga"),
    ("water_level", "escalated", "awas"),
    ("water_level", "deescalated", "siaga"),
    ("water_level", "deescalated", "waspada"),
    ("water_level", "cleared", "normal"),
]


def flood(seed: int = 2024) -> list[dict]:
    """Ten-minute samples: 4 h calm at 1.0 m, a rise of 0.25 m/h to 3.3 m, 2 h at the peak, a fall of 0.2 m/h, calm."""
    rng = random.Random(seed)
    levels = [1.0] * 24
    while levels[-1] < 3.3:
        levels.append(levels[-1] + 0.25 / 6)
    levels += [3.3] * 12
    while levels[-1] > 1.0:
        levels.append(levels[-1] - 0.2 / 6)
    levels += [1.0] * 24
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(minutes=10 * (len(levels) - 1))
    return [{"ts": (start + timedelta(minutes=10 * i)).isoformat().replace("+00:00", "Z"),
             "values": {"water_level": round(max(0.0, level + rng.uniform(-0.05, 0.05)), 3), "battery": 12.7}}
            for i, level in enumerate(levels)]


def events(database_url: str) -> list[tuple[str, str, str]]:
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            "SELECT a.kind, e.type, e.level FROM alert_events e JOIN alerts a ON a.id = e.alert_id "
            "WHERE a.station_id = ? AND e.type IN ('raised','escalated','deescalated','cleared') ORDER BY e.at, e.id",
            (STATION,),
        ).fetchall()
    return [tuple(row) for row in rows]


def wait_stored(database_url: str, expected: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = sqlite_count(database_url, "SELECT count(*) FROM readings WHERE station_id = ? AND metric = 'water_level'", STATION)
        if count >= expected:
            return count
        time.sleep(0.2)
    return count


def replay(tmp_path, samples: list[dict], kill_after: int | None) -> list[tuple[str, str, str]]:
    database_url = f"sqlite:///{tmp_path / f'ews-{uuid.uuid4().hex[:6]}.db'}"
    prefix = f"flood/{uuid.uuid4().hex[:8]}"
    with private_mosquitto() as broker:
        service = ServiceProcess(tmp_path / f"svc-{uuid.uuid4().hex[:6]}", database_url=database_url, mqtt_url=broker.url,
                                 prefix=prefix, env={"EWS_SEED": "luwu-timur"})
        service.start()
        publisher = Publisher(broker.url)
        try:
            for i, sample in enumerate(samples):
                publisher.publish(f"{prefix}/stations/{STATION}/readings", sample)
                if kill_after is not None and i == kill_after:
                    publisher.wait_all()
                    service.kill()  # SIGKILL: whatever was in hand is lost to the process, not to the broker
            publisher.wait_all()
            if not service.alive:
                service.start()
            assert wait_stored(database_url, len(samples)) == len(samples)
            time.sleep(1.0)
        finally:
            publisher.close()
            service.stop()
    return events(database_url)


def test_flood_replay_gives_exactly_the_expected_events(tmp_path):
    assert replay(tmp_path, flood(), kill_after=None) == EXPECTED


def test_flood_replay_gives_the_same_events_when_the_service_is_killed_midway(tmp_path):
    samples = flood()
    peak = max(range(len(samples)), key=lambda i: samples[i]["values"]["water_level"])
    assert replay(tmp_path, samples, kill_after=peak - 10) == EXPECTED
