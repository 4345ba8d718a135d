"""``ews run``: the whole service in one process (or one role of it, with ``--role``).

Start order: settings → database (migrate, seed) → embedded broker (when no
``EWS_MQTT_URL``) → MQTT ingest → scheduler → SMS dispatcher → HTTP. Stop order
is the reverse, so the batch in hand is committed and acknowledged before exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from config.settings import ConfigError, Settings, load_settings, parse_mqtt_url

log = logging.getLogger("ews")

ROLES = ("all", "ingest", "worker", "api")
SCHEDULER_PERIOD_S = 30


class Runtime:
    """The running service: owns every background thread and the HTTP server."""

    def __init__(self, settings: Settings, role: str = "all") -> None:
        self.settings = settings
        self.role = role
        self.services = None
        self.broker = None
        self.mqtt = None
        self.scheduler = None
        self.dispatcher = None
        self.http = None
        self._http_thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def start(self) -> "Runtime":
        """Start every part this role runs; raise on a start-up error."""
        from service.bootstrap import bootstrap
        from service.db.migrate import upgrade
        from service.seed import seed_if_empty

        self.services = services = bootstrap(self.settings)
        upgrade(services.engine)
        if self.settings.seed:
            seed_if_empty(services.engine, self.settings.seed, services.clock())
        if self.role in ("all", "ingest"):
            self._start_ingest()
        if self.role in ("all", "worker"):
            self._start_dispatcher()
            self._start_scheduler()
        if self.role in ("all", "api", "ingest", "worker"):
            self._start_http()
        return self

    # -- parts ---------------------------------------------------------------------------------

    def _start_ingest(self) -> None:
        from service.mqtt_ingest import MqttIngest

        url = self.settings.mqtt
        if url is None:
            from service.broker import EmbeddedBroker

            self.broker = EmbeddedBroker("127.0.0.1", self.settings.embedded_mqtt_port).start()
            url = parse_mqtt_url(self.broker.url)
        shared = os.environ.get("EWS_MQTT_SHARED_GROUP") or None
        self.mqtt = MqttIngest(
            url,
            self.settings.mqtt_topic_prefix,
            self.settings.mqtt_client_id,
            self.services.ingestor.ingest,
            on_connection_change=lambda up: self.services.metrics.mqtt_connected.set(1 if up else 0),
            shared_group=shared,
        )
        self.services.mqtt_connected = lambda: self.mqtt.connected and self.mqtt.db_healthy
        self.services.exercise_now = lambda: self.mqtt.exercise
        self.mqtt.start()
        log.info("MQTT ingest started on %s:%s, topic %s", url.host, url.port, self.mqtt.readings_filter)

    def _start_dispatcher(self) -> None:
        dispatch = _optional("service.dispatch")
        if dispatch is None:
            log.warning("SMS dispatch is not available in this build")
            return
        provider = dispatch.make_provider(self.settings, self.services.metrics)
        self.services.sms_provider = provider
        self.dispatcher = dispatch.Dispatcher(self.services, provider)
        self.services.wake_dispatcher = self.dispatcher.wake
        self.dispatcher.start()
        log.info("SMS dispatcher started (provider %s, at most %g/s)", self.settings.sms_provider, self.settings.sms_max_per_second)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        from service.jobs import schedule_jobs

        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        schedule_jobs(self.scheduler, self.services, SCHEDULER_PERIOD_S)
        self.scheduler.start()

    def _start_http(self) -> None:
        from waitress import create_server

        from service.http import create_app

        app = create_app(self.services)
        self.http = create_server(app, host=self.settings.http_host, port=self.settings.http_port, threads=16,
                                  channel_timeout=30, connection_limit=500, ident="ews")
        self._http_thread = threading.Thread(target=self._serve_http, name="http", daemon=True)
        self._http_thread.start()
        log.info("HTTP API and dashboard on http://%s:%s/", self.settings.http_host, self.http.effective_port)

    def _serve_http(self) -> None:
        try:
            self.http.run()
        except Exception:  # waitress raises on close from another thread on some platforms
            if not self.stopped.is_set():
                log.exception("HTTP server stopped unexpectedly")

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop in reverse order: no new HTTP, finish the MQTT batch, finish in-flight SMS."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.http is not None:
            self.http.close()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.services is not None:
            self.services.engine.dispose()
        log.info("stopped")


def _optional(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


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
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"ews: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    runtime = Runtime(settings, role=args.role)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        runtime.start()
    except Exception as exc:
        from service.broker import BrokerStartError

        if isinstance(exc, (BrokerStartError, OSError)):
            print(f"ews: {exc}", file=sys.stderr)
            runtime.stop()
            return 2
        raise
    stop.wait()
    runtime.stop()
    return 0
