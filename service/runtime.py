"""``ews run``: starts and stops what the composition root (service/bootstrap.py) built for one role.

Start order: database (migrate, seed) → embedded broker (when no ``EWS_MQTT_URL``) → MQTT
ingest → SMS dispatcher and spool reader → scheduler → HTTP. Stop order is the reverse, so
the batch in hand is committed and acknowledged before exit.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import threading

from alerts.errors import EwsError, StartupError
from config.settings import load_settings
from service.bootstrap import ROLES, Parts, build
from service.broker import forget_endpoint, record_endpoint
from service.db.migrate import upgrade
from service.heap import settle_after_startup
from service.leader import startup_lock
from service.seed import seed_if_empty
from service.tokens import warn_legacy_gateway_tokens

log = logging.getLogger("ews")


class Runtime:
    """The running service: starts the parts of one role, and stops the started ones in a fixed order."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.stopped = threading.Event()
        self._started: set[str] = set()

    def start(self) -> "Runtime":
        """Prepare the database, then start every part this role runs; raise on a start-up error."""
        services, settings = self.parts.services, self.parts.services.settings
        with startup_lock(services.engine):  # instances started together migrate and seed one at a time
            upgrade(services.engine)
            if settings.seed:
                seed_if_empty(services.engine, settings.seed, services.clock())
        warn_legacy_gateway_tokens(services.engine, services.clock())
        if self.parts.mqtt is not None:
            self._start_ingest()
        if self.parts.dispatcher is not None:
            self._start("dispatcher", self.parts.dispatcher)
            if self.parts.spool is not None:
                self._start("spool", self.parts.spool)
            log.info("SMS dispatcher started (provider %s, at most %g/s)", settings.sms_provider,
                     settings.sms_max_per_second)
        if self.parts.scheduler is not None:
            self._start("scheduler", self.parts.scheduler)
        self._start("http", self.parts.http)
        # What start-up built lives as long as the process: out of the collector's sight, a full
        # collection no longer walks it (100-250 ms otherwise, stalling the SMS senders' slots).
        gc.freeze()
        return self

    def _start(self, name: str, part) -> None:
        part.start()
        self._started.add(name)

    def _start_ingest(self) -> None:
        services, broker, mqtt = self.parts.services, self.parts.broker, self.parts.mqtt
        # A database upgraded from a release without the cap may hold far more: trim it before ingesting.
        services.ingestor.dead_letter_cap.enforce()
        settle_after_startup()  # before the first reading: start-up's objects stay out of the collector's passes
        if broker is not None:
            self._start("broker", broker)
            # ews simulate and ews gateway on this database find it there, whatever port it took.
            record_endpoint(services.engine, broker.url, services.instance_id, services.clock())
        self._start("mqtt", mqtt)
        log.info("MQTT ingest started on %s:%s, topic %s", mqtt.url.host, mqtt.url.port, mqtt.readings_filter)
        if self.parts.backlog is not None:
            self._start("backlog", self.parts.backlog)
            log.info("MQTT backlog session %s started, topic %s", self.parts.backlog.client_id,
                     self.parts.backlog.readings_filter)
        if self.parts.sirens is not None:
            self._start("siren_lease", self.parts.siren_lease)
            self._start("sirens", self.parts.sirens)

    def stop(self) -> None:
        """Stop what started: no new HTTP, finish the MQTT batch, the jobs, then in-flight SMS."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        parts = self.parts
        for name in ("http", "sirens", "siren_lease", "backlog", "mqtt", "scheduler", "spool", "dispatcher"):
            if name in self._started:
                getattr(parts, name).stop()  # the siren lease is given up, so another instance takes over
        if "broker" in self._started:
            forget_endpoint(parts.services.engine, parts.services.instance_id)
            parts.broker.stop()
        parts.services.engine.dispose()
        log.info("stopped")


def configure_logging(level: str) -> None:
    """Log to stderr; keep the chatty libraries at WARNING so an operator sees what matters."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("transitions", "amqtt", "apscheduler", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``ews run`` arguments."""
    parser.add_argument("--role", choices=ROLES, default="all",
                        help="which part this instance runs (default: all); see docs/deploy.md")


def command(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or SIGINT."""
    settings = load_settings(os.environ)  # a ConfigError is printed as one line by service.cli
    configure_logging(settings.log_level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        parts = build(settings, args.role)
    except OSError as exc:  # a port or file we cannot have: one line, like our own start-up errors
        raise StartupError(str(exc)) from exc
    runtime = Runtime(parts)
    try:
        runtime.start()
    except (EwsError, OSError) as exc:
        runtime.stop()
        if isinstance(exc, OSError):
            raise StartupError(str(exc)) from exc
        raise  # printed as one line by service.cli
    stop.wait()
    runtime.stop()
    return 0
