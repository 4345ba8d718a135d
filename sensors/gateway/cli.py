"""``ews gateway``: its options, and the loop that runs source and forwarder until the queue is empty."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from alerts.errors import UsageError
from sensors import mqttlink, topics
from sensors.gateway.forwarder import Forwarder
from sensors.gateway.queue import Queue
from sensors.gateway.source import Source

log = logging.getLogger("ews.gateway")


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
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s ews-gateway %(levelname)s %(message)s")
    problem = _bad_station_or_source(args)
    if problem:
        raise UsageError(problem)  # printed as one line by service.cli
    try:
        url, source = mqttlink.resolve_broker_url(args.mqtt_url, recorded=getattr(args, "recorded_broker_url", None))
        broker = mqttlink.parse_broker_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not 1 <= args.batch_max <= topics.MAX_SAMPLES_PER_PAYLOAD:
        raise UsageError(f"--batch-max must be 1..{topics.MAX_SAMPLES_PER_PAYLOAD}")
    prefix = topics.normalize_prefix(args.prefix) if args.prefix else mqttlink.default_prefix()
    gateway = _Gateway(args, broker, prefix)
    log.info("gateway %s: %d sample(s) queued from before; broker %s:%s (%s), prefix %s", args.station,
             gateway.queue.count(), broker.host, broker.port, source, prefix)
    gateway.run()
    return 0


def _bad_station_or_source(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--station`` or ``--source``, if anything."""
    if not topics.is_station_id(args.station):
        return f"--station {args.station!r} is not a station id (1-64 letters, digits, '-' or '_')"
    kind = args.source.partition(":")[0]
    if kind not in ("csv", "cmd", "serial") and args.source not in ("stdin", "-"):
        return f"--source {args.source!r}: use serial:/dev/ttyUSB0, csv:PATH, cmd:\"COMMAND\" or stdin"
    return None


class _Gateway:
    """One run of the agent: the queue, the MQTT client, the forwarder and the source, wired together."""

    def __init__(self, args: argparse.Namespace, broker, prefix: str):
        self.station = args.station
        self.prefix = prefix
        self.broker = broker
        self.queue = Queue(args.queue or os.environ.get("EWS_GATEWAY_QUEUE") or f"ews-gateway-{args.station}.db")
        self.stop = threading.Event()
        self.client = mqttlink.make_client(broker, args.client_id or f"ews-gw-{args.station}",
                                           will=(topics.status_topic(prefix, args.station), topics.STATUS_OFFLINE),
                                           max_inflight=max(args.max_inflight, 1))
        self.forwarder = Forwarder(self.queue, self.client, prefix, args.station, max_inflight=args.max_inflight,
                                   max_samples=args.batch_max)
        self.source = Source(args.source, args.station, self.queue, self.stop, follow=args.follow, baud=args.baud,
                             on_stored=self.forwarder.wake.set)

    def run(self) -> None:
        """Read and forward until done or signalled, then say goodbye and close the queue."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        threading.Thread(target=self.source.run, name="gateway-source", daemon=True).start()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        try:
            self._forward_until_done()
        finally:
            self._shut_down()

    def _on_signal(self, signum, frame) -> None:
        self.stop.set()
        self.forwarder.wake.set()

    def _forward_until_done(self) -> None:
        while not self.stop.is_set():
            self.forwarder.wake.wait(0.5)
            self.forwarder.wake.clear()
            self.forwarder.step()
            if self.source.finished.is_set() and self.forwarder.inflight() == 0 and self.queue.count() == 0:
                return

    def _shut_down(self) -> None:
        if self.client.is_connected():
            # A clean goodbye does not trigger the will, so say it ourselves.
            info = self.client.publish(topics.status_topic(self.prefix, self.station), topics.STATUS_OFFLINE,
                                       qos=1, retain=True)
            with contextlib.suppress(Exception):
                info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()
        left = self.queue.count()
        self.queue.close()
        log.info("gateway %s: %d sample(s) stored, %d acknowledged, %d bad line(s), %d left in the queue",
                 self.station, self.source.stored, self.forwarder.acked_samples, self.source.bad_lines, left)
