"""MQTT helpers for tests: a publisher that waits for every PUBACK."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import parse_mqtt_url


class Publisher:
    """A QoS 1 publisher that counts the broker's acknowledgements."""

    def __init__(self, url: str, client_id: str | None = None, max_inflight: int = 200) -> None:
        parsed = parse_mqtt_url(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(parsed.username or "gateway", parsed.password)
        self.client.max_inflight_messages_set(max_inflight)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.connect_async(parsed.host, parsed.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(15):
            raise TimeoutError(f"cannot connect to {url}")
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, body, qos: int = 1) -> None:
        """Publish ``body`` (bytes, or JSON-encoded) without waiting."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._infos.append(self.client.publish(topic, payload, qos=qos))

    def wait_all(self, timeout: float = 120.0) -> None:
        """Wait until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._infos.clear()

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
