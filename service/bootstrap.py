"""The composition root: builds every adapter once, from ``Settings``, and hands each exactly what it needs.

``bootstrap(settings)`` builds what every entry point shares (``Services``: the database,
metrics, clock, the ingest path and how to wake the SMS and CAP workers); ``build(settings,
role)`` builds, on top of it, every part ``ews run --role ROLE`` runs (``Parts``). The graph is
frozen and typed: nothing is patched on later, nothing here starts a thread or connects to a
broker. ``service/runtime.py`` only starts and stops the parts built here, and tests call
``bootstrap()`` (and the small factories below) with their own settings.

Build order (each part gets the ones before it)::

    settings -> engine, metrics, clock, instance id (Shared)
             -> [worker] SMS providers (Router) -> Dispatcher -> SpoolReader (gammu); Scheduler (rules, CAP, lease)
             -> Wakeups (dispatcher.wake, scheduler.cap.wake) -> Ingestor
             -> [ingest] embedded broker (no EWS_MQTT_URL) -> MqttIngest (readings to the Ingestor, status to
                gateway_status, siren acks to sirens) -> SirenController (publishes through MqttIngest) + its lease
             -> Health (MQTT, SMS) -> Services -> Flask app -> HttpServer
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from config.settings import MqttUrl, Settings, parse_mqtt_url
from config.templates import default_templates
from service import cap, gateway_status
from service.broker import EmbeddedBroker
from service.db.engine import make_engine
from service.dead_letters import DeadLetterCap
from service.dispatch import (
    Dispatcher,
    Router,
    Sending,
    SpoolReader,
    Timing,
    as_router,
    deployment_limiter,
    make_provider,
)
from service.dispatch.gammu import GammuProvider
from service.http import create_app
from service.http.server import HttpServer
from service.ingest import Ingestor
from service.jobs import Scheduler
from service.leader import Lease, new_holder_id
from service.metrics import Metrics
from service.mqtt_ingest import MqttIngest, backlog_session
from service.sirens import acks as siren_acks
from service.sirens.controller import SIREN_LEASE, SirenController
from service.wiring import Shared, Wakeups, nothing, utc_now

log = logging.getLogger("ews")

ROLES = ("all", "ingest", "worker", "api")
DEFAULT_SHARED_GROUP = "ews"


def never() -> bool:
    """Not connected: this instance does not ingest from MQTT."""
    return False


@dataclasses.dataclass(frozen=True)
class Health:
    """What /readyz reports besides the database: the MQTT link and the SMS providers of this instance."""

    mqtt_connected: Callable[[], bool] = never  # MqttIngest.ready when this instance ingests
    sms: Router | None = None  # the providers in failover order when this instance sends SMS
    role: str = "all"  # what ``ews run --role`` runs: /readyz checks what it needs (spec section 10)
    dispatcher_running: Callable[[], bool] = never  # Dispatcher.running when this instance sends SMS
    scheduler_running: Callable[[], bool] = never  # Scheduler.running when this instance runs the timed jobs


@dataclasses.dataclass(frozen=True)
class Services:
    """What the entry points (HTTP views, the dashboard, CLI commands, tests) use, built once."""

    settings: Settings
    shared: Shared
    ingestor: Ingestor
    wake: Wakeups = Wakeups()
    health: Health = Health()

    @property
    def engine(self) -> Engine:
        """The database."""
        return self.shared.engine

    @property
    def metrics(self) -> Metrics:
        """This process's Prometheus metrics."""
        return self.shared.metrics

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock (UTC)."""
        return self.shared.clock

    @property
    def instance_id(self) -> str:
        """This instance's name (host-pid unless given): in claims, leases and the broker's record."""
        return self.shared.instance_id


@dataclasses.dataclass(frozen=True)
class Parts:
    """Everything ``ews run --role ROLE`` runs, built and not started (None: not run by this role)."""

    role: str
    services: Services
    broker: EmbeddedBroker | None = None
    mqtt: MqttIngest | None = None
    backlog: MqttIngest | None = None  # the backlog session (spec section 16): flushes never delay fresh readings
    sirens: SirenController | None = None  # commands sirens through ``mqtt``, while holding ``siren_lease``
    siren_lease: Lease | None = None
    dispatcher: Dispatcher | None = None
    spool: SpoolReader | None = None
    scheduler: Scheduler | None = None
    http: HttpServer | None = None


# -- the shared graph --------------------------------------------------------------------------


def default_instance_id() -> str:
    """``host-pid``: unique per process, and tells a stale claim's process apart (service/dispatch)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def open_database(settings: Settings, *, connect_timeout_s: int | None = None) -> Engine:
    """The one engine of this process, for ``settings``' database (the CLI commands use it too)."""
    return make_engine(settings.database_url, connect_timeout_s=connect_timeout_s)


def bootstrap(settings: Settings, *, engine: Engine | None = None, clock: Callable[[], datetime] = utc_now,
              instance_id: str | None = None, wake: Wakeups = Wakeups(), health: Health = Health()) -> Services:
    """The services every entry point shares, for ``settings``; migrate nothing and start nothing."""
    shared = Shared(engine=engine or open_database(settings), metrics=Metrics(), clock=clock,
                    instance_id=instance_id or default_instance_id())
    return _services(settings, shared, wake, health)


def _services(settings: Settings, shared: Shared, wake: Wakeups, health: Health) -> Services:
    cap_bytes = settings.dead_letter_max_mb * 1024 * 1024
    ingestor = Ingestor(shared, topic_prefix=settings.mqtt_topic_prefix, exercise=settings.exercise,
                        dead_letter_cap=DeadLetterCap(shared.engine, cap_bytes, shared.metrics), wake=wake)
    return Services(settings=settings, shared=shared, ingestor=ingestor, wake=wake, health=health)


# -- the parts of ews run ------------------------------------------------------------------------


def build(settings: Settings, role: str = "all") -> Parts:
    """Every part ``ews run --role role`` runs, wired; nothing started (``service/runtime.py`` does that)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    shared = Shared(engine=open_database(settings), metrics=Metrics(), instance_id=default_instance_id())
    worker, ingest = role in ("all", "worker"), role in ("all", "ingest")
    router = make_provider(settings, shared.metrics, shared.engine, shared.instance_id) if worker else None
    dispatcher = _dispatcher(settings, shared, router) if worker else None
    scheduler = _scheduler(settings, shared, dispatcher) if worker else None
    # The siren controller needs the MQTT client, which needs the ingestor, which wakes the controller:
    # the one event they share is made first.
    siren_bell = threading.Event() if ingest else None
    wake = Wakeups(dispatcher=dispatcher.wake if worker else nothing, cap=scheduler.cap.wake if worker else nothing,
                   sirens=siren_bell.set if ingest else nothing)
    core = _services(settings, shared, wake, Health())
    broker, mqtt, backlog = _mqtt(settings, core) if ingest else (None, None, None)
    siren_lease, siren_controller = _sirens(settings, core, mqtt, siren_bell) if ingest else (None, None)
    health = Health(mqtt_connected=mqtt.ready if mqtt is not None else never, sms=router, role=role,
                    dispatcher_running=dispatcher.running if worker else never,
                    scheduler_running=scheduler.running if worker else never)
    services = dataclasses.replace(core, health=health)  # the same ingestor, now with what /readyz reads
    gammu = router.provider("gammu") if router is not None else None
    spool = spool_reader(services, gammu, dispatcher) if gammu is not None else None
    http = HttpServer(create_app(services), settings.http_host, settings.http_port)
    return Parts(role=role, services=services, broker=broker, mqtt=mqtt, backlog=backlog, sirens=siren_controller,
                 siren_lease=siren_lease, dispatcher=dispatcher, spool=spool, scheduler=scheduler, http=http)


def _dispatcher(settings: Settings, shared: Shared, router: Router, *, max_per_second: float | None = None,
                staff_match_areas: bool = False, **timing) -> Dispatcher:
    rate = max_per_second or settings.sms_max_per_second
    limiter = deployment_limiter(shared.engine, rate, on_missed=shared.metrics.sms_slots_missed.inc)
    sending = Sending(provider=router, max_per_second=rate, limiter=limiter, tz=settings.tz,
                      public_url=settings.public_url, templates=default_templates(),
                      staff_match_areas=staff_match_areas, validity_s=settings.sms_validity_s)
    return Dispatcher(shared, sending, Timing(**timing))


def _scheduler(settings: Settings, shared: Shared, dispatcher: Dispatcher) -> Scheduler:
    return Scheduler(shared, exercise=settings.exercise, cap_profile=cap.cap_profile(settings),
                     lease_ttl=settings.leader_lease_s, holder=new_holder_id(shared.instance_id),
                     wake_dispatcher=dispatcher.wake)


def _mqtt(settings: Settings, core: Services) -> tuple[EmbeddedBroker | None, MqttIngest, MqttIngest]:
    """The embedded broker (when ``EWS_MQTT_URL`` is unset), the ingest client and its backlog session."""
    ingestor = core.ingestor
    broker = None
    url = settings.mqtt
    if url is None:
        broker = EmbeddedBroker("127.0.0.1", settings.embedded_mqtt_port)
        broker.choose_port()  # the ingest client connects to the port it takes
        url = parse_mqtt_url(broker.url)
    else:
        _warn_about_client_id(settings, url)
    shared_group = shared_subscription_group(settings)
    if shared_group and settings.mqtt_client_id == "ews-ingest":
        log.warning("ingest shares group %r with the default client id: give every instance its own stable "
                    "EWS_MQTT_CLIENT_ID (see docs/deploy.md)", shared_group)
    metrics = ingestor.shared.metrics
    mqtt = MqttIngest(url, settings.mqtt_topic_prefix, settings.mqtt_client_id, ingestor.ingest,
                      on_connection_change=functools.partial(_connection_changed, metrics),
                      on_status=functools.partial(gateway_status.apply, ingestor),
                      on_siren_ack=functools.partial(siren_acks.record_acks, core), shared_group=shared_group)
    # Backlog flushes come through a session of their own, so fresh readings never queue behind them.
    backlog_url, backlog_id = backlog_session(url, settings.mqtt_client_id)
    backlog = MqttIngest(backlog_url, settings.mqtt_topic_prefix, backlog_id, ingestor.ingest,
                         shared_group=shared_group, backlog=True, live=mqtt)
    return broker, mqtt, backlog


def _sirens(settings: Settings, core: Services, mqtt: MqttIngest,
            bell: threading.Event) -> tuple[Lease, SirenController]:
    """The siren controller, publishing through ``mqtt``; with several ingest instances only the lease holder commands."""
    lease = Lease(core.engine, name=SIREN_LEASE, holder=new_holder_id(core.instance_id),
                  ttl=settings.leader_lease_s, on_change=functools.partial(_ring, bell))
    return lease, SirenController(core, mqtt.publish, leader=lease, wake_event=bell)


def _ring(bell: threading.Event, _leading: bool) -> None:
    bell.set()  # took the lease over (or lost it): the controller looks again now


def _connection_changed(metrics: Metrics, up: bool) -> None:
    metrics.mqtt_connected.set(1 if up else 0)


def _warn_about_client_id(settings: Settings, url: MqttUrl) -> None:
    """An external broker with users: the session is keyed by the user (config/mosquitto.conf), say so once."""
    if url.username and settings.mqtt_client_id != url.username:
        log.warning("EWS_MQTT_CLIENT_ID %r is not the MQTT user %r: a broker with use_username_as_clientid "
                    "(config/mosquitto.conf) uses the user name as the session's id instead; set "
                    "EWS_MQTT_CLIENT_ID=%s to match (docs/deploy.md)", settings.mqtt_client_id,
                    url.username, url.username)


def shared_subscription_group(settings: Settings) -> str | None:
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


# -- the same parts for tests and tools (their own timings; what ews run builds, with the defaults) ---


def sms_dispatcher(services: Services, provider, **tuning) -> Dispatcher:
    """A dispatcher on ``services`` sending with ``provider`` (one, or a Router), wired as ``build`` wires it.

    ``tuning``: ``max_per_second``, ``staff_match_areas`` and the fields of ``Timing``.
    """
    return _dispatcher(services.settings, services.shared, as_router(provider), **tuning)


def spool_reader(services: Services, gammu: GammuProvider, dispatcher: Dispatcher | None = None,
                 **tuning) -> SpoolReader:
    """A reader of ``gammu``'s spool on ``services``, waking ``dispatcher`` (if any) when it queues a reply."""
    wake = dispatcher.wake if dispatcher is not None else Wakeups().dispatcher
    return SpoolReader(services.shared, gammu, templates=default_templates(), tz=services.settings.tz,
                       wake_dispatcher=wake, **tuning)
