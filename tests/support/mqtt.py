"""MQTT helpers for tests: a publisher that waits for every PUBACK."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import parse_mqtt_url
from sensors import mqttlink


def connect_and_wait(client: mqtt.Client, url: str, connected: threading.Event, *, keepalive: int) -> None:
    """Connect ``client`` in the background and wait (15 s at most) until its ``on_connect`` sets ``connected``."""
    broker = parse_mqtt_url(url)
    client.connect_async(broker.host, broker.port, keepalive=keepalive)
    client.loop_start()
    if not connected.wait(15):
        raise TimeoutError(f"cannot connect to {url}")


class Publisher:
    """A QoS 1 publisher that counts the broker's acknowledgements."""

    def __init__(self, url: str, client_id: str | None = None, max_inflight: int = 200) -> None:
        self.client = mqttlink.make_client(parse_mqtt_url(url), client_id or f"pub-{uuid.uuid4().hex[:8]}",
                                           max_inflight=max_inflight)
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        connect_and_wait(self.client, url, self._connected, keepalive=30)
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, body, qos: int = 1, retain: bool = False) -> None:
        """Publish ``body`` (bytes, or JSON-encoded) without waiting."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._infos.append(self.client.publish(topic, payload, qos=qos, retain=retain))

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


class Subscriber:
    """A QoS 1 subscriber that keeps what it receives and every connect and disconnect it sees."""

    def __init__(self, url: str, filters: list[str], client_id: str | None = None) -> None:
        parsed = parse_mqtt_url(url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(parsed.username or "subscriber", parsed.password)
        self.messages: list[tuple[str, bytes]] = []
        self.events: list[str] = []  # "connected", "refused: ...", "disconnected"
        self.granted: list = []
        self._subscribed = threading.Event()

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                self.events.append(f"refused: {reason_code}")
                return
            self.events.append("connected")
            if filters:
                client.subscribe([(f, 1) for f in filters])

        def on_subscribe(client, userdata, mid, reason_codes, properties):
            self.granted = list(reason_codes)
            self._subscribed.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_disconnect = lambda c, u, f, rc, p: self.events.append("disconnected")
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect_async(parsed.host, parsed.port, keepalive=30)
        self.client.loop_start()

    def wait_subscribed(self, timeout: float = 15.0) -> list:
        """Wait for the SUBACK; return the broker's answer per filter."""
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"no SUBACK; events: {self.events}")
        return self.granted

    def topics(self) -> list[str]:
        """The topics of the messages received so far."""
        return [topic for topic, _ in self.messages]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
