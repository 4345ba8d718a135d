"""Hostile input drills against ``ews run``: a 1 MiB payload and 10,000 random payloads over MQTT and HTTP,
and a slow-loris HTTP client. The service stays up and keeps ingesting."""

from __future__ import annotations

import json
import random
import socket
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.drills.helpers import GAUGES, StreamPublisher, iso, wait_until
from tests.support.mqtt import Subscriber
from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.service_process import ServiceProcess, sqlite_count

pytestmark = [pytest.mark.drill, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (apt-get install mosquitto)")]

METRICS = ["water_level", "rainfall", "rain_tips", "battery", "signal", "temperature", "", "WATER_LEVEL"]


def random_payload(rng: random.Random, n: int, base: datetime) -> bytes:
    """Junk bytes, broken JSON, wrong shapes, and samples with random (sometimes valid) values."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:
        return json.dumps({"ts": iso(base), "values": {"water_level": 1.0}})[: rng.randrange(1, 40)].encode()
    if kind == 2:
        return json.dumps(rng.choice([None, 1, "x", [], [1, 2], {"a": {"b": []}}, True, 1e308])).encode()
    ts = rng.choice([iso(base + timedelta(seconds=n)), (base + timedelta(seconds=n)).timestamp(), "yesterday", None,
                     iso(base + timedelta(days=30)), iso(base - timedelta(days=30)), -1, "2026-13-45T99:00:00Z"])
    values = {rng.choice(METRICS): rng.choice([rng.uniform(-50, 50), 1.0, "1.0", None, float("nan"), [], 1e300])
              for _ in range(rng.randrange(0, 4))}
    sample = {"ts": ts, "values": values}
    if kind == 3:
        return json.dumps(sample).encode()
    if kind == 4:
        return json.dumps([sample] * rng.randrange(0, 5)).encode()
    return json.dumps({**sample, "seq": rng.randrange(-5, 10**12), rng.choice(["x", "ts", "values"]): {}}).encode()


DEAD_LETTER_CAP_MB = 1  # small, so 10,000 hostile payloads run into it


def counted(metrics_text: str) -> float:
    """Every sample or payload the service counted: accepted, duplicate or rejected (any reason)."""
    names = ("ews_readings_accepted_total", "ews_readings_duplicate_total", "ews_readings_rejected_total")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines() if line.startswith(names))


def metric(metrics_text: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines() if line.startswith(name + " "))


def test_random_and_huge_payloads_become_dead_letters_or_readings(tmp_path, figure):
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    rng = random.Random(20261130)
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=12)
    per_side = 5000
    huge = json.dumps({"ts": iso(base), "values": {"water_level": 1.0}, "pad": "x" * (1 << 20)}).encode()
    with private_mosquitto() as broker:
        service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 client_id=f"ews-drill-{uuid.uuid4().hex[:8]}",
                                 env={"EWS_SEED": "luwu-timur", "EWS_DEAD_LETTER_MAX_MB": str(DEAD_LETTER_CAP_MB)}).start()
        token = service.token("gateway", stations=GAUGES)
        publisher = StreamPublisher(broker.url)
        try:
            # 1 MiB over MQTT: the broker refuses the packet (max_packet_size) and drops that client;
            # from its own client, so the stream is not held up by it.
            huge_client = Subscriber(broker.url, [])
            wait_until(lambda: huge_client.events, 15, "the huge payload's client")
            huge_client.client.publish(f"{prefix}/stations/{GAUGES[0]}/readings", huge, qos=1)
            wait_until(lambda: "disconnected" in huge_client.events, 15, "the broker to drop the 1 MiB packet")
            huge_client.client.loop_stop()
            topics = [f"{prefix}/stations/{g}/readings" for g in GAUGES] + [f"{prefix}/stations/NOPE/readings",
                                                                            f"{prefix}/stations/a b/readings"]
            items = [(rng.choice(topics), random_payload(rng, n, base)) for n in range(per_side)]
            publisher.stream(items, rate=2000)
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            huge_answers: list[int] = []
            bodies = [huge] + [random_payload(rng, n, base + timedelta(hours=1)) for n in range(per_side)]

            def post(body: bytes) -> None:
                station = GAUGES[2] if body is huge else rng.choice(GAUGES + ["NOPE"])
                answer = session.post(f"{service.base_url}/api/v1/stations/{station}/readings", data=body, timeout=60,
                                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if body is huge:
                        huge_answers.append(answer.status_code)

            session = requests.Session()
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post, bodies))
            http_s = time.monotonic() - started
            publisher.wait_all()
            # Every payload the service took in was counted once at least (accepted, duplicate or rejected);
            # the broker keeps what the service has not committed: wait until the MQTT side is drained.
            expected = 2 * per_side + 1 - statuses.get(403, 0)  # a gateway posting for NOPE: 403, nothing stored
            wait_until(lambda: counted(service.text("/metrics")) >= expected, 120, "every payload counted")
            healthz = service.status("/healthz")
            # Still ingesting: one good sample after the storm is stored.
            good = {"ts": iso(datetime.now(timezone.utc).replace(microsecond=0)), "values": {"water_level": 0.777}}
            publisher.stream([(f"{prefix}/stations/{GAUGES[1]}/readings", json.dumps(good).encode())], rate=1)
            wait_until(lambda: sqlite_count(database_url, "SELECT COUNT(*) FROM readings WHERE value = 0.777") == 1, 60,
                       "the good sample after the storm")
            metrics_text = service.text("/metrics")
            dead = sqlite_count(database_url, "SELECT COUNT(*) FROM dead_letters")
            dead_bytes = sqlite_count(database_url, "SELECT COALESCE(SUM(size_bytes), 0) FROM dead_letters")
            largest = sqlite_count(database_url, "SELECT COALESCE(MAX(size_bytes), 0) FROM dead_letters")
            internal = sqlite_count(database_url, "SELECT COUNT(*) FROM dead_letters WHERE reason = 'internal_error'")
            too_large = sqlite_count(database_url, "SELECT COUNT(*) FROM dead_letters WHERE reason = 'too_large'")
            mqtt_huge = sqlite_count(database_url, "SELECT COUNT(*) FROM dead_letters WHERE source = 'mqtt' "
                                                   "AND payload_bytes > 262144")
            stored = sqlite_count(database_url, "SELECT COUNT(*) FROM readings")
            alive = service.alive
        finally:
            publisher.close()
            service.stop()
    dropped = metric(metrics_text, "ews_dead_letters_dropped_total")
    cap = DEAD_LETTER_CAP_MB * 1024 * 1024
    figure("HTTP answers", dict(sorted(statuses.items())))
    figure("1 MiB over HTTP answered", huge_answers)
    figure("HTTP side", f"{len(bodies)} posts in {http_s:.1f} s")
    figure("dead letters / readings", f"{dead} / {stored} (too_large {too_large}, internal_error {internal})")
    figure("dead-letter table", f"{dead} rows, {dead_bytes} bytes (cap {cap}), largest {largest}, "
                                f"{dropped:.0f} dropped by the cap")
    figure.summary(f"{2 * per_side + 2} hostile payloads (2 of 1 MiB): {dead} dead letters ({dead_bytes / 1e6:.2f} MB, "
                   f"{dropped:.0f} dropped by the cap), {stored} readings, HTTP {dict(sorted(statuses.items()))}, "
                   f"/healthz {healthz}, still ingesting")
    assert alive and healthz == 200
    assert not any(code >= 500 for code in statuses)
    assert huge_answers and 400 <= huge_answers[0] < 500
    assert mqtt_huge == 0  # the broker bounds payloads: the 1 MiB never reached the service over MQTT
    assert internal == 0
    # Bounded: one row per payload at most, each at most a 256 KiB payload and 1,000 listed rejections,
    # and the table under its cap (plus the one enforcement step of this instance).
    assert dead + dropped <= 2 * per_side + 2
    assert largest <= 256 * 1024 + 1000 * 400
    assert dead_bytes <= cap + 64 * 1024
    assert dropped > 0


def test_slow_loris_does_not_stop_healthz(tmp_path, figure):
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    connections, duration = 300, 12.0
    with private_mosquitto() as broker:
        service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 client_id=f"ews-drill-{uuid.uuid4().hex[:8]}").start()
        stop = threading.Event()
        opened = []

        def loris() -> None:
            request = b"GET /api/v1/stations HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
            for _ in range(connections):
                try:
                    sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
                    opened.append(sock)
                except OSError:
                    break
            position = 0
            while not stop.is_set():
                for sock in list(opened):
                    try:
                        sock.send(request[position:position + 1])
                    except OSError:
                        opened.remove(sock)
                position = (position + 1) % len(request)
                stop.wait(0.5)

        thread = threading.Thread(target=loris, daemon=True)
        try:
            thread.start()
            time.sleep(1.0)
            timings, codes = [], []
            end = time.monotonic() + duration
            while time.monotonic() < end:
                began = time.perf_counter()
                try:
                    codes.append(requests.get(f"{service.base_url}/healthz", timeout=10).status_code)
                except requests.RequestException:
                    codes.append(None)
                timings.append((time.perf_counter() - began) * 1000)
                time.sleep(0.2)
            still_open = len(opened)
        finally:
            stop.set()
            thread.join(5)
            for sock in opened:
                sock.close()
            service.stop()
    ok = codes.count(200)
    figure("slow connections held open", f"{still_open} of {connections}")
    figure("/healthz under slow loris", f"{ok} of {len(codes)} answered 200; median {statistics.median(timings):.1f} ms, "
                                        f"max {max(timings):.1f} ms")
    figure.summary(f"{still_open} slow-loris connections: /healthz {ok}/{len(codes)} OK, median "
                   f"{statistics.median(timings):.1f} ms, max {max(timings):.0f} ms")
    assert ok == len(codes)
    assert max(timings) < 2000
