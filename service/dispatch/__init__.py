"""SMS dispatch: the outbox of notifications, the providers (console, Twilio) and the dispatcher.

Wiring (``service/runtime.py``)::

    provider = make_provider(settings, metrics)
    dispatcher = Dispatcher(services, provider)
    services.wake_dispatcher = dispatcher.wake
    dispatcher.start()      # background threads; stop() lets in-flight sends finish
"""

from service.dispatch.dispatcher import Dispatcher, RateLimiter
from service.dispatch.providers import (
    ConsoleProvider,
    Found,
    Permanent,
    ProviderError,
    ProviderResult,
    Transient,
    TwilioProvider,
    Unknown,
    make_provider,
)

__all__ = [
    "ConsoleProvider",
    "Dispatcher",
    "Found",
    "Permanent",
    "ProviderError",
    "ProviderResult",
    "RateLimiter",
    "Transient",
    "TwilioProvider",
    "Unknown",
    "make_provider",
]
