"""SMS dispatch: the outbox of notifications, the providers (console, Twilio, Gammu), failover and the dispatcher.

Wiring (``service/bootstrap.py`` builds, ``service/runtime.py`` starts and stops)::

    router = make_provider(settings, metrics, engine, instance_id)   # EWS_SMS_PROVIDER, in failover order
    limiter = deployment_limiter(engine, rate)                        # one budget for every instance (PostgreSQL)
    dispatcher = Dispatcher(shared, Sending(router, rate, limiter, ...), Timing())
    reader = SpoolReader(shared, router.provider("gammu"), ..., wake_dispatcher=dispatcher.wake)  # with gammu
    dispatcher.start(); reader.start()      # background threads; stop() lets in-flight sends finish
"""

from service.dispatch.dispatcher import Dispatcher, Sending, Timing
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
from service.dispatch.rate import LocalBudget, Pace, RateLimiter, deployment_limiter
from service.dispatch.shared_budget import SharedBudget
from service.dispatch.spool import SpoolReader

__all__ = [
    "Busy",
    "ConsoleProvider",
    "Dispatcher",
    "Found",
    "GammuProvider",
    "Health",
    "LocalBudget",
    "Pace",
    "Permanent",
    "ProviderError",
    "ProviderResult",
    "RateLimiter",
    "Router",
    "Sending",
    "SharedBudget",
    "SpoolReader",
    "Timing",
    "Transient",
    "TwilioProvider",
    "Unknown",
    "as_router",
    "deployment_limiter",
    "make_provider",
]
