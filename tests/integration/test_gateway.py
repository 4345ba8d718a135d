"""``ews gateway`` loses nothing: 5,000 samples through two broker stops and a SIGKILL of the agent.

A private Mosquitto (persistence on) is stopped twice while the agent keeps reading a
growing CSV file; the agent itself is killed with SIGKILL once and restarted. A
subscriber with a persistent session collects everything. Every (station, metric, ts)
must arrive; duplicates are allowed at the MQTT level and reported. When the service
is available (``ews run``), it also runs against the same broker and must have stored
every sample exactly once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sensors import topics
from sensors.gateway import Queue, parse_line, sample_from_fields
from tests.support.infra import MOSQUITTO, PrivateMosquitto, wait_until

STATION = "PKR-LASKAP"  # a seed station, so the service (EWS_SEED=luwu-timur) knows it
TOTAL = 5000
CHUNK = 500
METRICS = ("water_level", "battery")




class Collector:
    """A QoS 1 subscriber with a persistent session that records every sample it receives."""

    def __init__(self, url: str, prefix: str):
        port = int(url.rsplit(":", 1)[1])
        self.prefix = prefix
        self.received: Counter = Counter()  # (station, metric, ts) -> times received
        self.messages = 0
        self.backlog_messages = 0  # of them, on the backlog topic (after a reconnect, spec section 16)
        self.statuses: list[str] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(topics.readings_subscription(prefix), 1), (topics.status_subscription(prefix), 1),
             (topics.backlog_subscription(prefix), 1)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, message):
        try:
            station = topics.parse_readings_topic(self.prefix, message.topic)
            backlog = topics.parse_backlog_topic(self.prefix, message.topic)
            if backlog is not None:
                station = backlog
                with self._lock:
                    self.backlog_messages += 1
            if station is None:
                with self._lock:
                    self.statuses.append(message.payload.decode())
                return
            body = json.loads(message.payload)
            with self._lock:
                self.messages += 1
                for sample in body if isinstance(body, list) else [body]:
                    for metric in sample["values"]:
                        self.received[(station, metric, sample["ts"])] += 1
        except Exception as exc:  # never kill the network thread
            print("collector:", exc, file=sys.stderr)

    def unique_samples(self) -> int:
        with self._lock:
            return len({(s, ts) for (s, _, ts) in self.received})

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class CsvLogger:
    """A data logger appending rows to a CSV file, as a field logger would."""

    def __init__(self, path: Path, start: datetime):
        self.path = path
        self.start = start
        self.written = 0
        path.write_text("ts," + ",".join(METRICS) + "\n")

    def ts(self, i: int) -> str:
        return (self.start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def write(self, count: int, piece: int = 50) -> None:
        """Append ``count`` rows, a few at a time like a logger does (the pauses only spread the load)."""
        for first in range(self.written, self.written + count, piece):
            with open(self.path, "a") as handle:
                for i in range(first, min(first + piece, self.written + count)):
                    handle.write(f"{self.ts(i)},{1 + (i % 300) / 100:.2f},{12 + (i % 10) / 10:.1f}\n")
            time.sleep(0.01)
        self.written += count


def queued(queue_file: Path) -> int:
    """Rows in the gateway's queue (read-only peek; WAL lets us read while it writes)."""
    if not queue_file.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{queue_file}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_gateway(broker: PrivateMosquitto, prefix: str, csv_file: Path, queue_file: Path, log_file: Path):
    command = [sys.executable, "-m", "service.cli", "gateway", "--station", STATION, "--source", f"csv:{csv_file}",
               "--follow", "--queue", str(queue_file), "--mqtt-url", broker.url, "--prefix", prefix,
               "--client-id", f"gw-{uuid.uuid4().hex[:8]}"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log_file, "ab"),
                            cwd=Path(__file__).resolve().parents[2])


def _service_available() -> bool:
    try:
        import service.runtime  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


@pytest.mark.broker
@pytest.mark.drill
@pytest.mark.slow
@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")
@pytest.mark.parametrize("with_service", [False, True], ids=["broker-only", "with-service"])
def test_gateway_loses_nothing_through_broker_stops_and_a_sigkill(tmp_path, with_service):
    if with_service and not _service_available():
        pytest.skip("service.runtime (ews run) is not available yet")
    prefix = f"ewstest/gw-{uuid.uuid4().hex[:8]}"
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = PrivateMosquitto(broker_dir).start()
    csv_file, queue_file, log_file = tmp_path / "logger.csv", tmp_path / "queue.db", tmp_path / "gateway.log"
    logger = CsvLogger(csv_file, datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1))
    collector = Collector(broker.url, prefix)
    service = None
    if with_service:
        from tests.e2e.test_scenarios import EwsService

        service = EwsService(tmp_path / "service", mqtt_url=broker.url, prefix=prefix).start()
    gateway = start_gateway(broker, prefix, csv_file, queue_file, log_file)
    try:
        logger.write(2 * CHUNK)
        wait_until(lambda: collector.unique_samples() >= 2 * CHUNK, 60, "the first 1,000 samples")

        # Broker stop 1: the logger keeps writing; the agent must queue on disk.
        broker.stop()
        logger.write(2 * CHUNK)
        wait_until(lambda: queued(queue_file) >= 2 * CHUNK, 60, "the agent to queue 1,000 samples while the broker is down")

        # SIGKILL of the agent with 1,000 samples queued (and some in paho's memory only):
        # a new process must pick up the queue and the file offset.
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(15)
        gateway = start_gateway(broker, prefix, csv_file, queue_file, log_file)
        logger.write(CHUNK)
        wait_until(lambda: queued(queue_file) >= 3 * CHUNK, 60, "the restarted agent to queue new samples")
        broker.start()
        logger.write(CHUNK)
        wait_until(lambda: collector.unique_samples() >= 6 * CHUNK, 60, "3,000 samples after the first restart")
        logger.write(CHUNK)

        # Broker stop 2.
        broker.stop()
        logger.write(2 * CHUNK)
        wait_until(lambda: queued(queue_file) >= 2 * CHUNK, 60, "the agent to queue 1,000 samples during the second stop")
        broker.start()
        logger.write(CHUNK)
        assert logger.written == TOTAL

        wait_until(lambda: collector.unique_samples() >= TOTAL, 120, "all 5,000 samples at the subscriber")
        wait_until(lambda: queued(queue_file) == 0, 60, "the agent's queue to drain")
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0

        expected = {(STATION, metric, logger.ts(i)) for i in range(TOTAL) for metric in METRICS}
        missing = expected - set(collector.received)
        assert not missing, f"{len(missing)} samples lost, e.g. {sorted(missing)[:3]}"
        duplicates = sum(n - 1 for n in collector.received.values()) // len(METRICS)
        # What was queued across a reconnect went out on the backlog topic (spec section 16).
        assert collector.backlog_messages > 0
        print(f"\ngateway drill: {TOTAL} samples, all arrived; {duplicates} duplicate(s) at the MQTT level, "
              f"{collector.messages} messages, {collector.backlog_messages} of them on the backlog topic")
        wait_until(lambda: collector.statuses and collector.statuses[-1] == topics.STATUS_OFFLINE, 30,
                   "the retained offline status after a clean stop")

        if service is not None:
            stored = wait_until(lambda: service.count_readings(STATION) == TOTAL * len(METRICS) and
                                service.count_readings(STATION), 120, "the service to store all 5,000 samples")
            assert service.count_distinct_readings(STATION) == stored == TOTAL * len(METRICS)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)
        collector.close()
        if service is not None:
            service.stop()
        broker.stop()


# --------------------------------------------------------------------------- smaller pieces


def test_line_format():
    station, sample = parse_line("ts=2026-11-30T06:05:00Z water_level=2.43 battery=12.6 signal=-87 seq=7", "PKR-LASKAP")
    assert station == "PKR-LASKAP"
    assert sample == {"ts": "2026-11-30T06:05:00Z", "seq": 7,
                      "values": {"water_level": 2.43, "battery": 12.6, "signal": -87}}
    assert parse_line("  # a comment", "X") is None
    assert parse_line("", "X") is None
    assert parse_line("station=ARR-MALILI ts=1764482700 rain_tips=18231", "X") == (
        "ARR-MALILI", {"ts": 1764482700, "values": {"rain_tips": 18231}})
    # values the service must judge are forwarded as they are
    assert parse_line("ts=2026-11-30T06:05:00Z water_level=nan", "X")[1]["values"] == {"water_level": "nan"}


@pytest.mark.parametrize("line", ["water_level 2.4", "ts=2026-11-30T06:05:00Z", "station=bad/id water_level=1"])
def test_bad_lines_are_refused(line):
    from sensors.gateway import LineError

    with pytest.raises(LineError):
        parse_line(line, "PKR-LASKAP")


def test_queue_numbers_samples_and_survives_reopening(tmp_path):
    queue = Queue(tmp_path / "q.db")
    queue.add([("S1", {"ts": "2026-11-30T06:00:00Z", "values": {"water_level": 1.0}}),
               ("S1", {"ts": "2026-11-30T06:10:00Z", "values": {"water_level": 1.1}})], ("file", 123))
    queue.close()
    queue = Queue(tmp_path / "q.db")
    rows = queue.after(0, 10)
    assert [json.loads(body)["seq"] for _, _, body in rows] == [1, 2]
    assert queue.position("file") == 123
    queue.delete([rows[0][0]])
    assert queue.count() == 1
    queue.add([("S1", {"ts": "2026-11-30T06:20:00Z", "values": {"water_level": 1.2}})])
    assert json.loads(queue.after(rows[0][0], 10)[-1][2])["seq"] == 3


def test_csv_fields_skip_empty_cells():
    station, sample = sample_from_fields({"ts": "2026-11-30T06:05:00Z", "water_level": "2.4", "battery": ""}, "S1")
    assert sample["values"] == {"water_level": 2.4}


@pytest.mark.broker
@pytest.mark.skipif(MOSQUITTO is None, reason="needs the mosquitto binary")
def test_command_source_and_status_topic(tmp_path):
    """``--source cmd:…``: lines from a program's stdout; retained online/offline on the status topic."""
    prefix = f"ewstest/gwcmd-{uuid.uuid4().hex[:8]}"
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = PrivateMosquitto(broker_dir).start()
    collector = Collector(broker.url, prefix)
    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    lines = [f"ts={(base + timedelta(seconds=10 * i)):%Y-%m-%dT%H:%M:%SZ} water_level={1 + i / 100:.2f} battery=12.5"
             for i in range(200)]
    lines.insert(50, "this is not a sample")
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "gateway", "--station", "LAO-HARAPAN",
             "--source", f"cmd:cat {tmp_path / 'lines.txt'}", "--queue", str(tmp_path / "q.db"),
             "--mqtt-url", broker.url, "--prefix", prefix],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
        assert result.returncode == 0, result.stderr
        assert "1 bad line(s), 0 left in the queue" in result.stderr
        wait_until(lambda: collector.unique_samples() >= 200, 30, "200 samples")
        wait_until(lambda: topics.STATUS_OFFLINE in collector.statuses, 30, "the offline status")
        assert topics.STATUS_ONLINE in collector.statuses
    finally:
        collector.close()
        broker.stop()
