"""The gateway's way out: queued rows handed to paho while connected, deleted on the broker's PUBACK.

After a (re)connect, what was queued before it is a backlog: it goes out on the station's
backlog topic (spec section 16), and rows queued since go out first, on the readings topic,
so a flood measured now never waits behind hours of old samples.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from sensors import topics
from sensors.gateway.queue import Queue

log = logging.getLogger("ews.gateway")

RESEND_AFTER_S = 120.0  # an in-flight message unacknowledged this long while connected is sent again


@dataclasses.dataclass(eq=False)
class Forwarder:
    """Hands queued rows to paho while connected and deletes them on PUBACK."""

    queue: Queue
    client: Any
    prefix: str
    station: str
    max_inflight: int = dataclasses.field(default=20, kw_only=True)
    max_samples: int = dataclasses.field(default=topics.MAX_SAMPLES_PER_PAYLOAD, kw_only=True)
    max_bytes: int = dataclasses.field(default=topics.MAX_PAYLOAD_BYTES, kw_only=True)

    def __post_init__(self) -> None:
        self.wake = threading.Event()
        self.sent_upto = 0  # highest row id handed to paho by this process (in the backlog, while flushing one)
        self.backlog_upto = 0  # rows up to this id were queued before the last connect: the backlog
        self.fresh_upto = 0  # highest row id after the backlog handed to paho
        self._connected_anew = False
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[list[int], float, str, bytes]] = {}
        self._acked: list[int] = []
        self.acked_samples = 0
        self.published_messages = 0
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    # paho callbacks (network thread): short, no database work.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self._connected_anew = True  # the queue is read on the main thread (step)
        client.publish(topics.status_topic(self.prefix, self.station), topics.STATUS_ONLINE, qos=1, retain=True)
        self.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        log.warning("disconnected (%s); samples stay queued on disk", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            self._acked.append(mid)
        self.wake.set()

    def inflight(self) -> int:
        """Messages handed to paho and not yet acknowledged."""
        with self._lock:
            return len(self._inflight)

    def step(self) -> None:
        """Apply acknowledgements, then publish more of the queue if connected and the window allows."""
        self._apply_acks()
        if not self.client.is_connected():
            return
        if self._connected_anew:
            self._connected_anew = False
            self._mark_backlog()
        self._resend_stale()
        while self.inflight() < self.max_inflight:
            if self.backlog_upto:
                # Fresh rows first, on the readings topic; then the backlog, on the backlog topic.
                if self._publish_rows(max(self.fresh_upto, self.backlog_upto), None, topics.readings_topic, "fresh"):
                    continue
                if self._publish_rows(self.sent_upto, self.backlog_upto, topics.backlog_topic, "backlog"):
                    continue
                log.info("backlog flushed")
                self.sent_upto, self.backlog_upto = max(self.sent_upto, self.fresh_upto), 0
                continue
            if not self._publish_rows(self.sent_upto, None, topics.readings_topic, "sent"):
                return

    def _mark_backlog(self) -> None:
        """Everything queued and not yet handed to paho at a connect is a backlog."""
        newest = self.queue.newest_id()
        waiting = self.queue.count()
        log.info("connected; %d sample(s) queued", waiting)
        if newest > max(self.sent_upto, self.fresh_upto):
            self.sent_upto = max(self.sent_upto, self.fresh_upto) if not self.backlog_upto else self.sent_upto
            self.backlog_upto = newest
            log.info("flushing the backlog (rows up to %d) on the backlog topic", newest)

    def _publish_rows(self, after: int, upto: int | None, topic_of, cursor: str) -> bool:
        """Hand the next rows after ``after`` (up to ``upto``) to paho on ``topic_of``; False if there were none."""
        rows = self.queue.after(after, self.max_samples * 4)
        if upto is not None:
            rows = [row for row in rows if row[0] <= upto]
        if not rows:
            return False
        for station, ids, payload in self._pack(rows):
            if self.inflight() >= self.max_inflight:
                return True
            self._publish(topic_of(self.prefix, station), payload, ids)
            if cursor == "fresh":
                self.fresh_upto = max(self.fresh_upto, ids[-1])
            else:
                self.sent_upto = max(self.sent_upto, ids[-1])
        return True

    def _pack(self, rows):
        """Consecutive rows of one station, packed within the payload limits."""
        run: list[tuple[int, str]] = []
        station = rows[0][1]
        for row_id, row_station, body in rows:
            if row_station != station:
                yield from self._pack_run(station, run)
                run, station = [], row_station
            run.append((row_id, body))
        yield from self._pack_run(station, run)

    def _pack_run(self, station, run):
        ids = [row_id for row_id, _ in run]
        start = 0
        for count, payload in topics.pack_batches((body.encode() for _, body in run), self.max_samples, self.max_bytes):
            yield station, ids[start:start + count], payload
            start += count

    def _publish(self, topic: str, payload: bytes, ids: list[int]) -> None:
        info = self.client.publish(topic, payload, qos=1)
        # rc NO_CONN: paho keeps the message and sends it after the reconnect; the rows stay on disk anyway.
        with self._lock:
            self._inflight[info.mid] = (ids, time.monotonic(), topic, payload)
            self.published_messages += 1

    def _apply_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
            ids = []
            for mid in acked:
                entry = self._inflight.pop(mid, None)
                if entry:
                    ids.extend(entry[0])
        if ids:
            self.queue.delete(ids)
            self.acked_samples += len(ids)

    def _resend_stale(self) -> None:
        """Belt and braces: paho resends in-flight messages on reconnect, but never let a row hang forever."""
        now = time.monotonic()
        with self._lock:
            stale = [mid for mid, (_, sent, _, _) in self._inflight.items() if now - sent > RESEND_AFTER_S]
            entries = [self._inflight.pop(mid) for mid in stale]
        for ids, _, topic, payload in entries:
            log.warning("no acknowledgement for %d sample(s) after %.0f s; sending them again", len(ids), RESEND_AFTER_S)
            self._publish(topic, payload, ids)
