"""A siren controller for tests, written from docs/sirens.md: a real MQTT client that reads its command
topic and answers on its ack topic (or stays silent)."""

from __future__ import annotations

import json
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import parse_mqtt_url


class TestSirenController:
    """Receives ``{prefix}/sirens/{id}/command``; acks ``on``/``off`` with that state unless ``silent``."""

    __test__ = False  # not a pytest class

    def __init__(self, url: str, prefix: str, siren_id: str, *, silent: bool = False, state: str | None = None) -> None:
        parsed = parse_mqtt_url(url)
        self.prefix, self.siren_id, self.silent, self.forced_state = prefix, siren_id, silent, state
        self.commands: list[dict] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{siren_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(parsed.username or siren_id, parsed.password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(parsed.host, parsed.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(15):
            raise TimeoutError(f"siren controller {siren_id} could not subscribe on {url}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(f"{self.prefix}/sirens/{self.siren_id}/command", qos=1)

    def _on_message(self, client, userdata, message) -> None:
        command = json.loads(message.payload)
        with self._lock:
            self.commands.append(command)
        if not self.silent:
            self.answer(command)

    def answer(self, command: dict, state: str | None = None, detail: str = "") -> None:
        """Ack ``command`` with ``state`` (default: what it asked for)."""
        state = state or self.forced_state or ("off" if command["action"] == "off" else "on")
        body = {"command_id": command["command_id"], "state": state, "detail": detail}
        self.client.publish(f"{self.prefix}/sirens/{self.siren_id}/ack", json.dumps(body).encode(), qos=1)

    def received(self) -> list[dict]:
        """The commands received so far, in order."""
        with self._lock:
            return list(self.commands)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
