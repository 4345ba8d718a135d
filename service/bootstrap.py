"""The composition root: builds the wired object graph (``Services``) from ``Settings``.

Only this module and ``service/runtime.py`` read ``Settings`` to build adapters; tests
call ``bootstrap()`` with their own settings. Nothing here starts a thread: starting
the MQTT client, the scheduler and the dispatcher is ``service/runtime.py``'s job.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from config.settings import Settings
from service.metrics import Metrics


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(timezone.utc)


@dataclasses.dataclass
class Services:
    """Everything an entry point (HTTP, MQTT, scheduler, CLI) needs, wired once."""

    settings: Settings
    engine: Engine
    metrics: Metrics
    ingestor: "object"  # service.ingest.Ingestor
    clock: Callable[[], datetime] = utc_now
    instance_id: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Set by service/runtime.py once the ingest client exists; /readyz reads it.
    mqtt_connected: Callable[[], bool] = lambda: False
    # Set by service/runtime.py: wakes the SMS dispatcher after a commit that queued messages.
    wake_dispatcher: Callable[[], None] = lambda: None
    # Set by service/runtime.py: issues the CAP messages of new alert events now (service.jobs).
    wake_cap: Callable[[], None] = lambda: None
    # Set by service/runtime.py: makes the siren controller look again now (service.sirens).
    wake_sirens: Callable[[], None] = lambda: None
    # Set by service/runtime.py: the SMS provider in use (service.dispatch), None until started.
    sms_provider: "object | None" = None


def bootstrap(settings: Settings, *, engine: Engine | None = None, clock: Callable[[], datetime] = utc_now) -> Services:
    """Build the services for ``settings``; migrate nothing and start nothing."""
    from service.db.engine import make_engine
    from service.ingest import Ingestor

    engine = engine or make_engine(settings.database_url)
    metrics = Metrics()
    services = Services(settings=settings, engine=engine, metrics=metrics, ingestor=None, clock=clock)
    services.ingestor = Ingestor(services)
    return services
