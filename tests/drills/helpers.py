"""Helpers shared by the drills: a resending stream publisher, sample streams, waiting."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt

from config.settings import parse_mqtt_url
from sensors import mqttlink
from tests.support.infra import wait_until
from tests.support.mqtt import connect_and_wait

GAUGES = ["PKR-LASKAP", "MLL-MALILI", "LAO-HARAPAN", "KLN-MANGKUTANA", "KLN-KALAENA", "KLN-WOTU", "AGK-ANGKONA",
          "LRN-PARUMPANAI"]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def sample_stream(prefix: str, count: int, seed: int = 3) -> list[tuple[str, bytes]]:
    """``count`` single water-level samples (all distinct, below every threshold) spread over the gauges."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)
    out = []
    for i in range(count):
        station = GAUGES[i % len(GAUGES)]
        ts = start + timedelta(seconds=10 * (i // len(GAUGES)))
        body = {"ts": iso(ts), "seq": i, "values": {"water_level": round(rng.uniform(0.2, 1.0), 3)}}
        out.append((f"{prefix}/stations/{station}/readings", json.dumps(body).encode()))
    return out




class StreamPublisher:
    """A gateway-like QoS 1 publisher with a persistent session: what the broker has not acknowledged
    stays in paho's queue and is sent again after a reconnect (also across a broker restart)."""

    def __init__(self, url: str, max_inflight: int = 100) -> None:
        self.client = mqttlink.make_client(parse_mqtt_url(url), f"drill-gw-{uuid.uuid4().hex[:8]}",
                                           clean_session=False, max_inflight=max_inflight)
        self.client.reconnect_delay_set(0.5, 2)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        connect_and_wait(self.client, url, self.connected, keepalive=10)
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.sent = 0
        self._thread: threading.Thread | None = None

    def stream(self, items: list[tuple[str, bytes]], rate: float) -> "StreamPublisher":
        """Publish ``items`` at ``rate`` per second in a background thread."""

        def run():
            started = time.monotonic()
            for i, (topic, payload) in enumerate(items):
                due = started + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.infos.append(self.client.publish(topic, payload, qos=1))  # NO_CONN still queues it
                self.sent = i + 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def acked(self) -> int:
        # is_published() raises for a message published while disconnected (rc NO_CONN), although paho
        # queued it and sends it after the reconnect; the flag it reads is set on the PUBACK either way.
        return sum(1 for info in list(self.infos) if info._published)

    def wait_all(self, timeout: float = 120.0) -> None:
        """Wait until the stream is published and the broker acknowledged every message."""
        if self._thread is not None:
            self._thread.join(timeout)
        wait_until(lambda: self.acked() == len(self.infos), timeout, "the broker to acknowledge every message")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
