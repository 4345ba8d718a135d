"""SMS dispatch: the outbox of notifications, the providers (console, Twilio, Gammu), failover and the dispatcher.

Wiring (``service/runtime.py``)::

    router = make_provider(settings, metrics, engine, instance_id)   # EWS_SMS_PROVIDER, in failover order
    dispatcher = Dispatcher(services, router)
    services.wake_dispatcher = dispatcher.wake
    dispatcher.start()      # background threads; stop() lets in-flight sends finish
    reader = spool_reader_for(services, router)   # Gammu: sent/, error/ and inbox/ (None without gammu)
    reader and reader.start()
"""

from service.dispatch.dispatcher import Dispatcher, RateLimiter
from service.dispatch.failover import Health, Router, as_router, make_provider
from service.dispatch.gammu import GammuProvider
from service.dispatch.providers import (
    Busy,
    ConsoleProvider,
    Found,
    Permanent,
    ProviderError,
    ProviderResult,
    Transient,
    TwilioProvider,
    Unknown,
)
from service.dispatch.spool import SpoolReader, spool_reader_for

__all__ = [
    "Busy",
    "ConsoleProvider",
    "Dispatcher",
    "Found",
    "GammuProvider",
    "Health",
    "Permanent",
    "ProviderError",
    "ProviderResult",
    "RateLimiter",
    "Router",
    "SpoolReader",
    "Transient",
    "TwilioProvider",
    "Unknown",
    "as_router",
    "make_provider",
    "spool_reader_for",
]
