"""The MQTT side of ingest: a paho-mqtt 2.x client with a persistent session and manual acknowledgement.

The paho network thread only queues each message (``on_message`` must stay fast and
must never raise: an exception there silently kills paho's loop thread). A worker
thread takes the queued messages in arrival order, commits them in one transaction
and only then acknowledges them, in the same order. A crash before the commit
leaves the messages unacknowledged in the broker's session, which redelivers them.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import NamedTuple

import paho.mqtt.client as mqtt

from config.settings import MqttUrl
from sensors import mqttlink, topics
from service.heap import collector_waits
from service.ingest_messages import Message, mqtt_reading
from service.mqtt_acks import ack_all
from service.topic_messages import TopicMessage

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
MAX_BATCH = 1000  # the broker's in-flight window (config/mosquitto.conf): one commit per window
LIVE_FIRST_WAIT_S = 0.5  # the most a backlog transaction waits for the live session's queue to empty
QUEUE_SIZE = 5000
BACK_PRESSURE_POLL_S = 0.005  # how often a full queue is looked at again (only when the broker has no window)


class Received(NamedTuple):
    """What the worker needs of a message paho delivered (see ``MqttIngest._on_message``)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    received_at: datetime


@dataclasses.dataclass(eq=False, repr=False)
class MqttIngest:
    """Subscribes to every station's readings topic and feeds batches to ``ingest``; with ``on_status``,
    also to every station's status topic (a gateway's last will, service/gateway_status.py).

    ``backlog=True`` makes it the backlog session of spec section 16: its own client (and
    broker session) reading only ``{prefix}/stations/+/backlog``. It takes up to an in-flight
    window of messages and commits them one station at a time, each transaction waiting (briefly)
    while the live session given as ``live`` has readings queued: fresh readings are judged first,
    and wait at most for one station's part of a backlog. A backlog's samples are older than the
    station's newest, so each transaction replays the station's horizon with them in place: one
    replay for all of a station's samples in hand, not one per short batch of every station.
    Every message of the window is acknowledged, in order, once all of them are committed.
    """

    url: MqttUrl
    prefix: str
    client_id: str
    ingest: Callable[[list[Message]], object]
    on_connection_change: Callable[[bool], None] = dataclasses.field(default=lambda connected: None, kw_only=True)
    on_status: Callable[[list[TopicMessage]], object] | None = dataclasses.field(default=None, kw_only=True)
    on_siren_ack: Callable[[list[TopicMessage]], object] | None = dataclasses.field(default=None, kw_only=True)
    shared_group: str | None = dataclasses.field(default=None, kw_only=True)
    max_batch: int | None = dataclasses.field(default=None, kw_only=True)
    backlog: bool = dataclasses.field(default=False, kw_only=True)
    live: MqttIngest | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        self.max_batch = self.max_batch or MAX_BATCH
        prefix, group = self.prefix, self.shared_group
        topic = topics.backlog_subscription(prefix) if self.backlog else f"{prefix}/stations/+/readings"
        self.readings_filter = f"$share/{group}/{topic}" if group else topic
        drills = f"{prefix}/exercise/stations/+/readings"  # staff start exercises through the API
        self.exercise_filter = f"$share/{group}/{drills}" if group else drills
        # Status topics: never shared (a broker sends no retained message to a shared subscription)
        # and handled by every instance (raising an offline alert twice records it once).
        self.on_status = None if self.backlog else self.on_status
        self.status_filter = topics.status_subscription(prefix)
        # Siren acks (spec section 12): never shared either; every instance records them (idempotent).
        self.on_siren_ack = None if self.backlog else self.on_siren_ack
        self.siren_ack_filter = topics.siren_ack_subscription(prefix)
        # A SimpleQueue (C, no lock in Python): a Queue's put and get cost a few microseconds a message.
        self._queue: queue.SimpleQueue[Received | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._connected = threading.Event()  # connected and subscribed
        self._subscription: int | None = None  # the mid of the newest SUBSCRIBE
        self._client = self._make_client()
        self._worker = threading.Thread(target=self._work, name="mqtt-ingest-worker", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="mqtt-ingest-watchdog", daemon=True)
        self.db_healthy = True
        self.last_commit_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        # MQTT 3.1.1 with clean_session=False and a fixed client id is a persistent session on
        # Mosquitto and on amqtt alike (amqtt speaks no MQTT 5); see tech-notes section 1.2.
        client = mqttlink.make_client(self.url, self.client_id, clean_session=False, manual_ack=True, username="ews")
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start the worker."""
        self._worker.start()
        self._client.connect_async(self.url.host, self.url.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._watchdog.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the batch in hand, acknowledge it, then disconnect."""
        self._stopping.set()
        self._queue.put(None)
        self._worker.join(timeout)
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set()

    def ready(self) -> bool:
        """Connected, and the last batch reached the database (/readyz)."""
        return self.connected and self.db_healthy

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the first connection is up and its subscriptions are granted."""
        return self._connected.wait(timeout)

    # -- paho callbacks (network thread: fast, never raise) -----------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.error("MQTT broker refused the connection: %s", reason_code)
                return
            filters = [(self.readings_filter, 1)] + ([] if self.backlog else [(self.exercise_filter, 1)])
            filters += [(self.status_filter, 1)] if self.on_status else []
            filters += [(self.siren_ack_filter, 1)] if self.on_siren_ack else []
            # Connected means subscribed: ready (/readyz) only once the broker's SUBACK granted every filter.
            self._subscription = client.subscribe(filters)[1]
            log.info("connected to MQTT %s:%s (session present: %s)", self.url.host, self.url.port, flags.session_present)
        except Exception:
            log.exception("error in MQTT on_connect")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        try:
            if mid != self._subscription:
                return
            refused = [code for code in reason_codes if code.is_failure]
            if refused:  # e.g. the broker's ACL denies this user a filter: nothing would ever arrive
                log.error("MQTT broker refused %d of the service's subscriptions (%s): check the broker's ACL "
                          "(ews broker acl) for user %r", len(refused), refused[0], self.url.username or "ews")
                return
            self._connected.set()
            self.on_connection_change(True)
        except Exception:
            log.exception("error in MQTT on_subscribe")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            self._connected.clear()
            self.on_connection_change(False)
            if not self._stopping.is_set():
                log.warning("MQTT connection lost (%s); reconnecting", reason_code)
        except Exception:
            log.exception("error in MQTT on_disconnect")

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            # The broker's in-flight window bounds the unacknowledged messages, so the queue
            # never fills in practice; if it does, waiting here is the right back-pressure.
            while self._queue.qsize() >= QUEUE_SIZE and not self._stopping.is_set():
                time.sleep(BACK_PRESSURE_POLL_S)
            # Only what the worker needs is queued: paho's message (its info object, a Condition and
            # its lock, a dozen objects) then dies at once by reference count, and the collector's pass
            # after each batch no longer walks the next batch's paho objects (docs/performance.md).
            self._queue.put(Received(_topic_of(message), message.payload, message.mid, message.qos,
                                     bool(message.retain), datetime.now(timezone.utc)))
        except Exception:
            log.exception("error in MQTT on_message")

    # -- worker ------------------------------------------------------------------------------

    _storing = False  # the worker has a batch in hand (the backlog session waits for that too)

    def _work(self) -> None:
        """Take messages in arrival order, commit them in batches, acknowledge after commit."""
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            # The collector waits until the batch is acknowledged and let go: a pass right after the
            # commit walked every message, result and sample of the batch, all about to die by count.
            self._storing = True
            try:
                with collector_waits():
                    if self.backlog:
                        self._commit_by_station_then_ack(batch)
                    else:
                        self._commit_then_ack(batch)
                    batch = None
            finally:
                self._storing = False

    def queued(self) -> int:
        """Messages received and not yet taken by the worker."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float) -> None:
        """Wait until the worker has nothing in hand or queued (at most ``timeout``): the backlog session's courtesy.
        Not only the queue: a backlog transaction beside a live batch takes its write turns and half its CPU."""
        deadline = time.monotonic() + timeout
        while (self._storing or self._queue.qsize()) and time.monotonic() < deadline and not self._stopping.is_set():
            time.sleep(0.002)

    def _next_batch(self) -> list[Received] | None:
        try:
            first = self._queue.get(timeout=0.5)
        except queue.Empty:
            return None if self._stopping.is_set() else []
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # keep the stop signal for the next round
                break
            batch.append(item)
        return batch

    def _commit_then_ack(self, batch: list[Received]) -> None:
        acks, statuses, readings = [], [], []
        for m in batch:
            topic, at = m.topic, m.received_at
            # The suffix first: almost every message is a reading, and the full parse costs more.
            if topic.endswith("/ack") and self._is_siren_ack(topic):
                acks.append(_to_topic_message(m, at))
            elif topic.endswith("/status") and self._is_status(topic):
                statuses.append(_to_topic_message(m, at))
            else:
                readings.append(mqtt_reading(topic, m.payload, at))
        if not self._until_stored(self.ingest, readings):
            return
        if statuses and not self._until_stored(self.on_status, statuses):
            return
        if acks and not self._until_stored(self.on_siren_ack, acks):
            return
        ack_all(self._client, batch)

    def _commit_by_station_then_ack(self, batch: list[Received]) -> None:
        """The backlog session's way: one transaction per station (the live session's readings go
        first between two), then every message acknowledged in arrival order."""
        by_station: dict[str, list[Message]] = {}
        for m in batch:
            by_station.setdefault(m.topic, []).append(mqtt_reading(m.topic, m.payload, m.received_at))
        for readings in by_station.values():
            if self.live is not None:
                self.live.wait_idle(LIVE_FIRST_WAIT_S)
            if not self._until_stored(self.ingest, readings):
                return
        ack_all(self._client, batch)

    def _is_siren_ack(self, topic: str) -> bool:
        return self.on_siren_ack is not None and topics.parse_siren_topic(self.prefix, topic, "ack") is not None

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish QoS 1, not retained (siren commands); False when paho could not take it now."""
        try:
            info = self._client.publish(topic, payload, qos=1, retain=False)
        except Exception:  # a full queue or a closed socket: the caller re-sends later
            log.exception("could not publish on %s", topic[:200])
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _is_status(self, topic: str) -> bool:
        return self.on_status is not None and topics.parse_status_topic(self.prefix, topic) is not None

    def _until_stored(self, handler: Callable[[list], object], items: list) -> bool:
        """Hand ``items`` to ``handler`` until it commits; False if the worker is stopping first."""
        delay = 0.5
        while items:
            try:
                handler(items)
                self.db_healthy = True
                self.last_commit_at = time.monotonic()
                return True
            except Exception:
                # The database is unreachable (or failing): keep the messages unacknowledged,
                # so the broker keeps them, and try again with backoff.
                self.db_healthy = False
                log.exception("could not store %d MQTT messages; retrying in %.1f s", len(items), delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, 10.0) * random.uniform(0.8, 1.2)
        return True

    def _watch(self) -> None:
        """Restart paho's loop thread if it ever died (a callback exception kills it silently)."""
        while not self._stopping.wait(5.0):
            thread = getattr(self._client, "_thread", None)
            if thread is not None and not thread.is_alive() and not self._stopping.is_set():
                log.error("paho network thread died; restarting it")
                self._client.loop_start()


BACKLOG_SUFFIX = "-backlog"


def backlog_session(url: MqttUrl, client_id: str) -> tuple[MqttUrl, str]:
    """The broker user and client id of the backlog session: the service's own with ``-backlog``.

    A broker with ``use_username_as_clientid`` (config/mosquitto.conf) keys sessions by the user,
    so the second session needs a user of its own (``ews broker acl`` grants it the backlog
    topics; give it a password like the service's, docs/deploy.md).
    """
    user = f"{url.username}{BACKLOG_SUFFIX}" if url.username else None
    base = url.username or client_id
    return dataclasses.replace(url, username=user), f"{base}{BACKLOG_SUFFIX}"[:64]


def _to_topic_message(message: Received, received_at: datetime) -> TopicMessage:
    return TopicMessage(topic=message.topic, payload=message.payload, received_at=received_at,
                        retained=message.retain)


def _topic_of(message: mqtt.MQTTMessage) -> str:
    """The topic as text (paho decodes it at every access); a name that is no UTF-8 (a broker should have
    refused it) becomes one no station has, so the message is dead-lettered, not the worker stopped."""
    try:
        return message.topic
    except UnicodeDecodeError:
        return "(topic not UTF-8)"
