"""``ews gateway``: a store-and-forward agent for the small Linux board at a field station.

The one rule: **a sample is written to the local SQLite queue before anything else**,
and it leaves the queue only when the broker has acknowledged the MQTT message that
carried it (QoS 1 PUBACK → paho ``on_publish`` with that message id). So a dead GSM link,
a restarted broker or a power cut at the station (SIGKILL included) loses nothing; the
price is that a sample may be sent twice (the service dedupes on station, metric, ts).

Flow::

    source (serial / csv / cmd / stdin) ─► reader thread ─► SQLite queue (WAL, synchronous=FULL)
                                                               │  oldest first, only while connected,
                                                               ▼  packed ≤ 1000 samples and ≤ 256 KiB
                                           publisher (main thread) ─► paho (QoS 1) ─► broker
                                                               ▲
                                     PUBACK (on_publish, mid) ─┘ delete those rows

While the link is down nothing new is handed to paho: the queue grows on disk, and after
the reconnect the backlog goes out as arrays. Messages paho already had in flight are
resent by paho itself on reconnect. After a restart every queued row is sent again.

Text line format (serial, cmd, stdin), one sample per line::

    ts=2026-11-30T06:05:00Z water_level=2.43 battery=12.6 signal=-87

``ts`` (RFC 3339 or epoch seconds; the board's clock when missing), optional ``seq`` and
``station``; every other ``key=value`` is a metric, forwarded as is (the service judges
names and ranges). Blank lines and lines starting with ``#`` are ignored. CSV files have
a header row with the same names (``ts,water_level,battery``); empty cells are skipped.
See docs/field.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sensors import topics

log = logging.getLogger("ews.gateway")

READ_CHUNK_LINES = 500  # lines of a file committed in one transaction
RESEND_AFTER_S = 120.0  # an in-flight message unacknowledged this long while connected is sent again


class LineError(ValueError):
    """A source line that is not a sample."""


# --------------------------------------------------------------------------- parsing


def _number(raw: str) -> Any:
    """An int or float when ``raw`` is one; else the text itself (the service will say not_a_number)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def _now_ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sample_from_fields(fields: dict[str, str], default_station: str) -> tuple[str, dict[str, Any]]:
    """A ``(station_id, sample)`` from named text fields (a parsed line or CSV row)."""
    fields = {k.strip(): v.strip() for k, v in fields.items() if k and v is not None and v.strip() != ""}
    station = fields.pop("station", default_station)
    if not topics.is_station_id(station):
        raise LineError(f"bad station id {station!r}")
    ts_raw = fields.pop("ts", None)
    ts: Any = _now_ts() if ts_raw is None else ts_raw
    if ts_raw is not None and not any(c in ts_raw for c in "-:T"):
        ts = _number(ts_raw)  # epoch seconds
    sample: dict[str, Any] = {"ts": ts}
    seq = fields.pop("seq", None)
    if seq is not None:
        sample["seq"] = _number(seq)
    if not fields:
        raise LineError("no values")
    sample["values"] = {name: _number(value) for name, value in fields.items()}
    return station, sample


def parse_line(line: str, default_station: str) -> tuple[str, dict[str, Any]] | None:
    """Parse one text line; None for blank and comment lines; LineError when it is not ``key=value`` pairs."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise LineError(f"expected key=value, got {token!r}")
        fields[key] = value
    return sample_from_fields(fields, default_station)


# --------------------------------------------------------------------------- queue


class Queue:
    """The durable outbox: samples in arrival order, plus a few counters (seq, source offsets)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed sample survives a power cut, not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " station_id TEXT NOT NULL, body TEXT NOT NULL, queued_at TEXT NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def position(self, source_key: str) -> int:
        """How far into ``source_key`` (a file) the queue has read, in bytes."""
        with self._lock:
            value = self._meta(f"pos:{source_key}")
        return int(value) if value else 0

    def add(self, samples: list[tuple[str, dict[str, Any]]], position: tuple[str, int] | None = None) -> None:
        """Store samples (numbering those without ``seq``) and the source position, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._meta("seq") or 0)
                now = _now_ts()
                for station, sample in samples:
                    if "seq" not in sample:
                        seq += 1
                        sample = {"ts": sample["ts"], "seq": seq, "values": sample["values"]}
                    self._db.execute(
                        "INSERT INTO queue (station_id, body, queued_at) VALUES (?, ?, ?)",
                        (station, topics.encode_sample(sample).decode("utf-8"), now),
                    )
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
                if position is not None:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"pos:{position[0]}", str(position[1])))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` queued rows with an id above ``last_id``, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT id, station_id, body FROM queue WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()

    def delete(self, ids: list[int]) -> None:
        """Forget rows the broker has acknowledged."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def count(self) -> int:
        """Rows waiting for an acknowledgement."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- sources


class Source:
    """Where samples come from; ``run`` feeds the queue until the source ends or ``stop`` is set."""

    def __init__(self, spec: str, station: str, queue: Queue, stop: threading.Event, follow: bool = False,
                 baud: int = 9600, on_stored=lambda: None):
        self.spec = spec
        self.station = station
        self.queue = queue
        self.stop = stop
        self.follow = follow
        self.baud = baud
        self.on_stored = on_stored
        self.finished = threading.Event()
        self.bad_lines = 0
        self.stored = 0

    def run(self) -> None:
        """Read the source (in the reader thread)."""
        try:
            kind, _, target = self.spec.partition(":")
            if kind == "csv":
                self._run_csv(Path(target))
            elif kind == "cmd":
                self._run_stream(self._command_lines(target))
            elif kind == "serial":
                self._run_stream(self._serial_lines(target))
            elif self.spec in ("stdin", "-"):
                self._run_stream(iter(sys.stdin.readline, ""))
            else:
                raise ValueError(f"unknown source {self.spec!r}")
        except Exception:
            log.exception("source %s failed", self.spec)
        finally:
            self.finished.set()
            self.on_stored()

    def _store(self, samples, position=None) -> None:
        if samples or position is not None:
            self.queue.add(samples, position)
            self.stored += len(samples)
            self.on_stored()

    def _parse(self, line: str):
        try:
            return parse_line(line, self.station)
        except LineError as exc:
            self.bad_lines += 1
            log.warning("skipped a bad line (%s): %.120r", exc, line)
            return None

    def _run_stream(self, lines: Iterator[str]) -> None:
        # A live stream cannot be re-read: commit every line as soon as it arrives.
        for line in lines:
            if self.stop.is_set():
                return
            parsed = self._parse(line)
            if parsed:
                self._store([parsed])

    def _command_lines(self, command: str) -> Iterator[str]:
        process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            yield from process.stdout
        finally:
            with contextlib.suppress(Exception):
                process.terminate()
                process.wait(5)

    def _serial_lines(self, device: str) -> Iterator[str]:
        try:
            import serial  # pyserial, optional
        except ImportError:
            serial = None
        if serial is None:
            # Without pyserial: read the device as a file; set it up first with
            # `stty -F /dev/ttyUSB0 9600 raw -echo` (docs/field.md).
            with open(device, encoding="ascii", errors="replace") as port:
                yield from port
            return
        with serial.Serial(device, self.baud, timeout=1) as port:
            while not self.stop.is_set():
                raw = port.readline()
                if raw:
                    yield raw.decode("ascii", errors="replace")

    def _run_csv(self, path: Path) -> None:
        """Read a CSV file from where we left off; with ``follow``, keep reading what is appended."""
        key = str(path.resolve())
        offset = self.queue.position(key)
        header: list[str] | None = None
        while not self.stop.is_set():
            with open(path, "rb") as handle:
                if header is None:
                    first = handle.readline()
                    if not first.endswith(b"\n"):
                        if not self.follow:
                            return
                        time.sleep(0.2)
                        continue
                    header = next(csv.reader([first.decode("utf-8-sig")]))
                    offset = max(offset, len(first))
                handle.seek(offset)
                data = handle.read(1 << 20)
            complete = data[: data.rfind(b"\n") + 1]  # only whole lines; a half-written row waits
            if not complete:
                if not self.follow:
                    return
                time.sleep(0.2)
                continue
            batch: list[tuple[str, dict[str, Any]]] = []
            consumed = 0
            for raw in complete.splitlines(keepends=True):
                consumed += len(raw)
                text = raw.decode("utf-8", errors="replace")
                if text.strip() and not text.lstrip().startswith("#"):
                    row = next(csv.reader([text]))
                    try:
                        batch.append(sample_from_fields(dict(zip(header, row)), self.station))
                    except LineError as exc:
                        self.bad_lines += 1
                        log.warning("skipped a bad CSV row (%s): %.120r", exc, text)
                if len(batch) >= READ_CHUNK_LINES:
                    self._store(batch, (key, offset + consumed))
                    batch = []
            offset += consumed
            self._store(batch, (key, offset))


# --------------------------------------------------------------------------- forwarding


class Forwarder:
    """Hands queued rows to paho while connected and deletes them on PUBACK."""

    def __init__(self, queue: Queue, client, prefix: str, station: str, *, max_inflight: int = 20,
                 max_samples: int = topics.MAX_SAMPLES_PER_PAYLOAD, max_bytes: int = topics.MAX_PAYLOAD_BYTES):
        self.queue = queue
        self.client = client
        self.prefix = prefix
        self.station = station
        self.max_inflight = max_inflight
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.wake = threading.Event()
        self.sent_upto = 0  # highest row id handed to paho by this process
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[list[int], float, str, bytes]] = {}
        self._acked: list[int] = []
        self.acked_samples = 0
        self.published_messages = 0
        client.on_publish = self._on_publish
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    # paho callbacks (network thread): short, no database work.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        log.info("connected; %d sample(s) queued", self.queue.count())
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
        self._resend_stale()
        while self.inflight() < self.max_inflight:
            rows = self.queue.after(self.sent_upto, self.max_samples * 4)
            if not rows:
                return
            for station, ids, payload in self._pack(rows):
                if self.inflight() >= self.max_inflight:
                    return
                self._publish(topics.readings_topic(self.prefix, station), payload, ids)
                self.sent_upto = max(self.sent_upto, ids[-1])

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


# --------------------------------------------------------------------------- command line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``ews gateway`` options."""
    parser.add_argument("--station", required=True, help="station id of this gateway (its status topic; lines may name others)")
    parser.add_argument("--source", required=True,
                        help="serial:/dev/ttyUSB0 | csv:PATH | cmd:\"COMMAND\" | stdin (see docs/field.md)")
    parser.add_argument("--follow", action="store_true", help="csv: keep reading lines appended to the file")
    parser.add_argument("--baud", type=int, default=9600, help="serial speed (default 9600; needs pyserial)")
    parser.add_argument("--queue", help="SQLite queue file (default: EWS_GATEWAY_QUEUE or ./ews-gateway-{station}.db)")
    parser.add_argument("--mqtt-url", help="broker URL (default: EWS_MQTT_URL, else the embedded broker of ews run on the "
                                           "same database, wherever it listens, else mqtt://127.0.0.1:1883)")
    parser.add_argument("--prefix", help="topic prefix (default: EWS_MQTT_TOPIC_PREFIX or ews/v1)")
    parser.add_argument("--client-id", help="MQTT client id (default: ews-gw-{station})")
    parser.add_argument("--max-inflight", type=int, default=20, help="unacknowledged messages at most (default 20)")
    parser.add_argument("--batch-max", type=int, default=topics.MAX_SAMPLES_PER_PAYLOAD,
                        help="samples per message at most (default and spec limit 1000)")
    parser.add_argument("--log-level", default=os.environ.get("EWS_LOG_LEVEL", "INFO"))


def command(args: argparse.Namespace) -> int:
    """Run ``ews gateway`` until the source ends and the queue is empty (or until SIGTERM/SIGINT)."""
    from sensors import mqttlink

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s ews-gateway %(levelname)s %(message)s")
    if not topics.is_station_id(args.station):
        print(f"ews gateway: --station {args.station!r} is not a station id (1-64 letters, digits, '-' or '_')", file=sys.stderr)
        return 2
    kind = args.source.partition(":")[0]
    if kind not in ("csv", "cmd", "serial") and args.source not in ("stdin", "-"):
        print(f"ews gateway: --source {args.source!r}: use serial:/dev/ttyUSB0, csv:PATH, cmd:\"COMMAND\" or stdin",
              file=sys.stderr)
        return 2
    try:
        url, source = mqttlink.resolve_broker_url(args.mqtt_url, recorded=getattr(args, "recorded_broker_url", None))
        broker = mqttlink.parse_broker_url(url)
    except ValueError as exc:
        print(f"ews gateway: {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.batch_max <= topics.MAX_SAMPLES_PER_PAYLOAD:
        print(f"ews gateway: --batch-max must be 1..{topics.MAX_SAMPLES_PER_PAYLOAD}", file=sys.stderr)
        return 2
    prefix = topics.normalize_prefix(args.prefix) if args.prefix else mqttlink.default_prefix()
    queue = Queue(args.queue or os.environ.get("EWS_GATEWAY_QUEUE") or f"ews-gateway-{args.station}.db")
    stop = threading.Event()
    client = mqttlink.make_client(broker, args.client_id or f"ews-gw-{args.station}",
                                  will=(topics.status_topic(prefix, args.station), topics.STATUS_OFFLINE),
                                  max_inflight=max(args.max_inflight, 1))
    forwarder = Forwarder(queue, client, prefix, args.station, max_inflight=args.max_inflight, max_samples=args.batch_max)
    source = Source(args.source, args.station, queue, stop, follow=args.follow, baud=args.baud,
                    on_stored=forwarder.wake.set)

    def _stop(signum, frame):
        stop.set()
        forwarder.wake.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("gateway %s: %d sample(s) queued from before; broker %s:%s (%s), prefix %s", args.station, queue.count(),
             broker.host, broker.port, source, prefix)
    reader = threading.Thread(target=source.run, name="gateway-source", daemon=True)
    reader.start()
    client.connect_async(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        while not stop.is_set():
            forwarder.wake.wait(0.5)
            forwarder.wake.clear()
            forwarder.step()
            if source.finished.is_set() and forwarder.inflight() == 0 and queue.count() == 0:
                break
    finally:
        if client.is_connected():
            # A clean goodbye does not trigger the will, so say it ourselves.
            info = client.publish(topics.status_topic(prefix, args.station), topics.STATUS_OFFLINE, qos=1, retain=True)
            with contextlib.suppress(Exception):
                info.wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        left = queue.count()
        queue.close()
        log.info("gateway %s: %d sample(s) stored, %d acknowledged, %d bad line(s), %d left in the queue",
                 args.station, source.stored, forwarder.acked_samples, source.bad_lines, left)
    return 0
