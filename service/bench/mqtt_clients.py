"""The MQTT clients of ``ews bench``: a connected client for a ``with`` block, persistent sessions, QoS 1 publishing."""

from __future__ import annotations

import contextlib
import time
import uuid

from config.settings import parse_mqtt_url
from service.bench.common import Progress


def mqtt_client(url: str, client_id: str, *, clean: bool, manual_ack: bool = False, max_inflight: int = 1000):
    """A paho 2.x MQTT 3.1.1 client (not yet connected)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                         protocol=mqtt.MQTTv311, manual_ack=manual_ack)
    client.username_pw_set("bench")
    client.max_inflight_messages_set(max_inflight)
    return client


@contextlib.contextmanager
def connected(client, url: str, keepalive: int = 30):
    """``client`` (its callbacks set) connected to ``url`` with its network loop running, for a ``with`` block."""
    parsed = parse_mqtt_url(url)
    client.connect(parsed.host, parsed.port, keepalive=keepalive)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def create_session(url: str, client_id: str, topic_filter: str) -> None:
    """Connect ``client_id`` once with a persistent session subscribed to ``topic_filter`` (QoS 1), then leave."""
    import threading

    client = mqtt_client(url, client_id, clean=False)
    subscribed = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    with connected(client, url):
        if not subscribed.wait(15):
            raise TimeoutError(f"{client_id}: no SUBACK")


def publish_all(url: str, items, total: int, progress: Progress | None = None, max_inflight: int = 1000) -> float:
    """Publish ``(topic, payload bytes)`` items at QoS 1 as fast as the broker acknowledges; return seconds."""
    import threading

    client = mqtt_client(url, f"bench-pub-{uuid.uuid4().hex[:8]}", clean=True, max_inflight=max_inflight)
    acked = 0
    lock = threading.Lock()
    all_acked = threading.Event()

    def on_publish(c, u, mid, rc, p):
        nonlocal acked
        with lock:
            acked += 1
            if acked >= total:
                all_acked.set()

    client.on_publish = on_publish
    with connected(client, url, keepalive=60):
        started = time.monotonic()
        for i, (topic, payload) in enumerate(items):
            # paho keys unacknowledged messages by their 16-bit message id: more than 65,535 outstanding
            # would collide and lose acknowledgements, so stay well below.
            while i - acked > 20_000:
                time.sleep(0.01)
            client.publish(topic, payload, qos=1)
            if progress is not None and i % 500 == 0:
                progress.update(acked)
        while not all_acked.wait(0.1):
            if progress is not None:
                progress.update(acked)
        elapsed = time.monotonic() - started
        if progress is not None:
            progress.done(acked)
    return elapsed
