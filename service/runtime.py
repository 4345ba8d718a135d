"""``ews run``: the whole service in one process (or one role of it, with ``--role``).

Start order: settings → database (migrate, seed) → embedded broker (when no
``EWS_MQTT_URL``) → MQTT ingest → scheduler → SMS dispatcher → HTTP. Stop order
is the reverse, so the batch in hand is committed and acknowledged before exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from alerts.errors import EwsError, StartupError
from config.settings import Settings, load_settings, parse_mqtt_url

log = logging.getLogger("ews")

ROLES = ("all", "ingest", "worker", "api")
SCHEDULER_PERIOD_S = 30
DEFAULT_SHARED_GROUP = "ews"


class Runtime:
    """The running service: owns every background thread and the HTTP server."""

    def __init__(self, settings: Settings, role: str = "all") -> None:
        self.settings = settings
        self.role = role
        self.services = None
        self.broker = None
        self.mqtt = None
        self.sirens = None  # the siren controller (service/sirens.py), beside the MQTT client
        self.siren_lease = None
        self.backlog = None  # the backlog session (spec section 16)
        self.scheduler = None
        self.leader = None
        self.dispatcher = None
        self.spool = None  # the Gammu spool reader (sent/, error/, inbox/) when EWS_SMS_PROVIDER names gammu
        self.http = None
        self._http_thread: threading.Thread | None = None
        self.stopped = threading.Event()

    def start(self) -> "Runtime":
        """Start every part this role runs; raise on a start-up error."""
        from service.bootstrap import bootstrap
        from service.db.migrate import upgrade
        from service.leader import startup_lock
        from service.seed import seed_if_empty
        from service.tokens import warn_legacy_gateway_tokens

        self.services = services = bootstrap(self.settings)
        with startup_lock(services.engine):  # instances started together migrate and seed one at a time
            upgrade(services.engine)
            if self.settings.seed:
                seed_if_empty(services.engine, self.settings.seed, services.clock())
        warn_legacy_gateway_tokens(services.engine, services.clock())
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
        from service import gateway_status, sirens
        from service.mqtt_ingest import MqttIngest, backlog_session

        # A database upgraded from a release without the cap may hold far more: trim it before ingesting.
        self.services.ingestor.dead_letter_cap.enforce()
        url = self.settings.mqtt
        if url is None:
            from service.broker import EmbeddedBroker, record_endpoint

            self.broker = EmbeddedBroker("127.0.0.1", self.settings.embedded_mqtt_port).start()
            url = parse_mqtt_url(self.broker.url)
            # ews simulate and ews gateway on this database find it there, whatever port it took.
            record_endpoint(self.services.engine, self.broker.url, self.services.instance_id, self.services.clock())
        if url.username and self.settings.mqtt_client_id != url.username:
            # config/mosquitto.conf has use_username_as_clientid: the broker keys the session by the user.
            log.warning("EWS_MQTT_CLIENT_ID %r is not the MQTT user %r: a broker with use_username_as_clientid "
                        "(config/mosquitto.conf) uses the user name as the session's id instead; set "
                        "EWS_MQTT_CLIENT_ID=%s to match (docs/deploy.md)", self.settings.mqtt_client_id,
                        url.username, url.username)
        shared = shared_group(self.settings)
        if shared and self.settings.mqtt_client_id == "ews-ingest":
            log.warning("ingest shares group %r with the default client id: give every instance its own stable "
                        "EWS_MQTT_CLIENT_ID (see docs/deploy.md)", shared)
        self.mqtt = MqttIngest(
            url,
            self.settings.mqtt_topic_prefix,
            self.settings.mqtt_client_id,
            self.services.ingestor.ingest,
            on_connection_change=lambda up: self.services.metrics.mqtt_connected.set(1 if up else 0),
            on_status=lambda statuses: gateway_status.apply(self.services, statuses),
            on_siren_ack=lambda acks: sirens.record_acks(self.services, acks),
            shared_group=shared,
        )
        self.services.mqtt_connected = lambda: self.mqtt.connected and self.mqtt.db_healthy
        self.mqtt.start()
        log.info("MQTT ingest started on %s:%s, topic %s", url.host, url.port, self.mqtt.readings_filter)
        # Backlog flushes come through a session of their own, so fresh readings never queue behind them.
        backlog_url, backlog_id = backlog_session(url, self.settings.mqtt_client_id)
        self.backlog = MqttIngest(backlog_url, self.settings.mqtt_topic_prefix, backlog_id,
                                  self.services.ingestor.ingest, shared_group=shared, backlog=True, live=self.mqtt)
        self.backlog.start()
        log.info("MQTT backlog session %s started, topic %s", backlog_id, self.backlog.readings_filter)
        self._start_sirens()

    def _start_sirens(self) -> None:
        from service import sirens
        from service.leader import Lease, new_holder_id

        # Sirens are commanded through this process's MQTT client (one session per service user);
        # with several ingest instances only the holder of the sirens lease commands them.
        self.siren_lease = Lease(self.services.engine, name=sirens.SIREN_LEASE,
                                 holder=new_holder_id(self.services.instance_id), ttl=self.settings.leader_lease_s,
                                 on_change=lambda leading: self.sirens is not None and self.sirens.wake())
        self.sirens = sirens.SirenController(self.services, self.mqtt.publish, leader=self.siren_lease)
        self.services.wake_sirens = self.sirens.wake
        self.siren_lease.start()
        self.sirens.start()

    def _start_dispatcher(self) -> None:
        from service import dispatch

        provider = dispatch.make_provider(self.settings, self.services.metrics, self.services.engine,
                                          self.services.instance_id)
        self.services.sms_provider = provider
        self.dispatcher = dispatch.Dispatcher(self.services, provider)
        self.services.wake_dispatcher = self.dispatcher.wake
        self.dispatcher.start()
        self.spool = dispatch.spool_reader_for(self.services, provider)
        if self.spool is not None:
            self.spool.start()
        log.info("SMS dispatcher started (provider %s, at most %g/s)", self.settings.sms_provider, self.settings.sms_max_per_second)

    def _start_scheduler(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        from service.jobs import run_now, schedule_cap_jobs, schedule_jobs
        from service.leader import Lease, new_holder_id

        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})

        def on_change(leading: bool) -> None:
            # Took the lease over from a dead leader: run the jobs now, not a period later.
            if leading and self.scheduler.running:
                run_now(self.scheduler, self.services, self.leader)

        # Every scheduler instance schedules the jobs; only the lease holder runs them (service/leader.py).
        self.leader = Lease(self.services.engine, holder=new_holder_id(self.services.instance_id),
                            ttl=self.settings.leader_lease_s, on_change=on_change)
        schedule_jobs(self.scheduler, self.services, SCHEDULER_PERIOD_S, leader=self.leader)
        self.services.wake_cap = schedule_cap_jobs(self.scheduler, self.services, leader=self.leader)
        self.leader.start()
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
        if self.sirens is not None:
            self.sirens.stop()
        if self.siren_lease is not None:
            self.siren_lease.stop(release=True)
        if self.backlog is not None:
            self.backlog.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        if self.leader is not None:
            self.leader.stop(release=True)
        if self.spool is not None:
            self.spool.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.broker is not None:
            from service.broker import forget_endpoint

            forget_endpoint(self.services.engine, self.services.instance_id)
            self.broker.stop()
        if self.services is not None:
            self.services.engine.dispose()
        log.info("stopped")


def shared_group(settings: Settings) -> str | None:
    """The MQTT shared-subscription group for ingest, or None for a plain subscription.

    ``EWS_MQTT_SHARED_GROUP`` names it (``none`` turns sharing off). Unset, ingest shares
    the group ``ews`` when the database is PostgreSQL and the broker is external: that is
    the set-up where several instances may run, and a lone member of a group gets every
    message anyway. SQLite (one instance) and the embedded amqtt (no ``$share``) subscribe plainly.
    """
    raw = settings.mqtt_shared_group
    if not raw:
        return DEFAULT_SHARED_GROUP if (not settings.is_sqlite and settings.mqtt is not None) else None
    if raw.lower() in ("none", "off", "false", "0"):
        return None
    return raw


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
    runtime = Runtime(settings, role=args.role)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        runtime.start()
    except (EwsError, OSError) as exc:
        runtime.stop()
        if isinstance(exc, OSError):  # a port or file we cannot have: one line, like our own start-up errors
            raise StartupError(str(exc)) from exc
        raise  # printed as one line by service.cli
    stop.wait()
    runtime.stop()
    return 0
