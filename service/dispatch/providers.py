"""SMS providers behind one small port: ``send()`` and, where the provider can, ``lookup()``.

``send(to, body, callback_url)`` returns a ``ProviderResult`` or raises one of:

- ``Transient(retry_after)``: not sent; safe to try again later (429, connection refused, ...);
- ``Permanent(code, message)``: will never succeed (21211 invalid number, 21610 unsubscribed, ...);
- ``Unknown``: the request may have been accepted (timeout after sending, connection dropped,
  5xx). Never resend blindly: reconcile with ``lookup()`` first (Twilio has no idempotency key).
- ``Busy``: a Transient that says nothing about the provider's health (the modem's queue is full).

Several providers in a row (``twilio,gammu``) are ``service.dispatch.failover.Router``.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import logging
import math
import re
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Protocol

from alerts.errors import SmsError
from service.phones import mask, mask_numbers

log = logging.getLogger(__name__)

# Twilio error codes that are about the recipient or the content: retrying cannot help.
PERMANENT_CODES = {21211, 21212, 21214, 21217, 21219, 21401, 21407, 21408, 21421, 21601, 21602, 21603, 21604,
                   21605, 21606, 21608, 21610, 21612, 21614, 21617, 21618, 21619, 21621, 30004, 30005, 30006, 30007}
# Codes that mean "slow down" or "queue full": try again later.
TRANSIENT_CODES = {20429, 21611, 30001, 20500, 20503}
OPT_OUT_CODES = {21610}
TWILIO_MAX_VALIDITY_S = 36000  # the Messages API's upper bound for ValidityPeriod
# Twilio message status -> our notification status.
STATUS_MAP = {
    "accepted": "sent", "scheduled": "sent", "queued": "sent", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "delivered", "received": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}


@dataclasses.dataclass(frozen=True)
class ProviderResult:
    """The provider accepted the message: its id (Twilio's ``SM…`` sid, Gammu's outbox file name)."""

    sid: str
    status: str = "sent"  # "spooled" for Gammu: in the daemon's queue, not sent yet
    provider: str | None = None  # set by the failover router: who carried it


@dataclasses.dataclass(frozen=True)
class Found:
    """A message ``lookup()`` found at the provider."""

    sid: str
    status: str  # ours: sent, delivered, undelivered, failed (spooled for Gammu)
    error_code: str | None = None
    provider: str | None = None


class ProviderError(SmsError):
    """Base of the send outcomes that are not a plain success."""

    def __init__(self, message: str = "", code=None, retry_after: float | None = None) -> None:
        # Providers quote the recipient in their errors ("The 'To' number +62... is not valid"):
        # mask it here, before any log line or stored error text can carry it.
        message = mask_numbers(message) or ""
        super().__init__(message)
        self.message = message
        self.code = None if code is None else str(code)
        self.retry_after = retry_after


class Transient(ProviderError):
    """Not sent; try again after ``retry_after`` seconds (or the backoff)."""


class Permanent(ProviderError):
    """Will never be sent: ``code`` says why."""


class Unknown(ProviderError):
    """The provider may or may not have accepted it: reconcile before sending again."""


class Busy(Transient):
    """Not sent because the provider's own queue is full (a modem): try later; the provider is not failing."""


class Provider(Protocol):
    """What the dispatcher needs from an SMS provider."""

    name: str
    can_lookup: bool

    def send(self, to: str, body: str, callback_url: str | None) -> ProviderResult: ...

    def lookup(self, to: str, body: str, since: datetime) -> Found | None: ...

    def close(self) -> None: ...


class ConsoleProvider:
    """Prints every message (phone masked) and keeps the last ones in memory; always succeeds."""

    name = "console"
    can_lookup = False

    def __init__(self, stream=None, keep: int = 1000) -> None:
        self.stream = stream
        self.sent: collections.deque = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def send(self, to: str, body: str, callback_url: str | None) -> ProviderResult:
        """Print the message; return a made-up sid."""
        sid = "CONSOLE" + uuid.uuid4().hex[:26]
        with self._lock:
            self.sent.append({"sid": sid, "to": to, "body": body, "at": datetime.now(timezone.utc)})
            stream = self.stream or sys.stdout
            print(f"SMS {sid} to {mask(to)}: {body}", file=stream, flush=True)
        return ProviderResult(sid)

    def lookup(self, to: str, body: str, since: datetime) -> Found | None:
        """The console keeps no provider-side record: nothing can be looked up."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def _retry_after(headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify_twilio_error(status, code, message: str, headers=None) -> ProviderError:
    """Map a Twilio error answer (HTTP status, Twilio code) to Transient, Permanent or Unknown."""
    retry_after = _retry_after(headers)
    try:
        code_int = int(code) if code is not None else None
    except (TypeError, ValueError):
        code_int = None
    status = int(status) if status is not None else None
    if status == 429 or code_int in TRANSIENT_CODES:
        return Transient(message, code_int or status, retry_after)
    if status is not None and status >= 500:
        # Twilio may have created the message before failing to answer (tech-notes 4.5).
        return Unknown(message, code_int or status, retry_after)
    if code_int in PERMANENT_CODES:
        return Permanent(message, code_int)
    if status in (401, 403, 404):
        # Credentials or account trouble: every message would fail; keep them queued for the fix.
        return Transient(message, code_int or status, retry_after)
    if status is not None and 400 <= status < 500:
        return Permanent(message, code_int or status)
    return Unknown(message, code_int or status, retry_after)


def _classify_network_error(exc) -> ProviderError:
    """A ``requests`` exception: refused/unreachable before sending is Transient, anything later Unknown."""
    import requests
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Transient(f"connect timeout: {exc}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        if isinstance(reason, (NewConnectionError, NameResolutionError)):
            return Transient(f"cannot connect: {reason}")
    return Unknown(f"{type(exc).__name__}: {exc}")


def _twilio_http_client_class():
    from twilio.http.http_client import TwilioHttpClient

    class EwsTwilioHttpClient(TwilioHttpClient):
        """TwilioHttpClient that rewrites ``https://*.twilio.com`` to ``base_url`` and remembers the last headers."""

        def __init__(self, base_url: str | None = None, **kwargs) -> None:
            super().__init__(**kwargs)
            self.base_url = base_url.rstrip("/") if base_url else None
            self.last_headers = None

        def request(self, method, url, *args, **kwargs):
            if self.base_url:
                url = re.sub(r"^https://[^/]*\.twilio\.com", self.base_url, url)
            self.last_headers = None
            response = super().request(method, url, *args, **kwargs)
            self.last_headers = response.headers
            return response

    return EwsTwilioHttpClient


def _load_twilio() -> None:
    """Load the library's message API now: loaded at the first send, it delayed a process's first warning 0.1-0.4 s."""
    from twilio.rest import Client

    Client("AC" + "0" * 32, "unused").messages  # noqa: B018 - reading the attribute loads the modules behind it


def validity_period(valid_until: datetime | None, now: datetime | None = None) -> int | None:
    """The seconds left until ``valid_until`` as Twilio's ValidityPeriod (1 to 36,000), None without a limit."""
    if valid_until is None:
        return None
    left = math.ceil((valid_until - (now or datetime.now(timezone.utc))).total_seconds())
    return max(1, min(TWILIO_MAX_VALIDITY_S, left))


@dataclasses.dataclass(eq=False, repr=False)
class TwilioProvider:
    """Twilio's Messages API through the official library (or a Twilio-compatible endpoint)."""

    name = "twilio"
    can_lookup = True
    wants_notification = True  # its validity becomes Twilio's ValidityPeriod

    account_sid: str
    auth_token: str
    from_number: str | None = dataclasses.field(default=None, kw_only=True)
    messaging_service_sid: str | None = dataclasses.field(default=None, kw_only=True)
    base_url: str | None = dataclasses.field(default=None, kw_only=True)
    timeout: float = dataclasses.field(default=15.0, kw_only=True)
    validity_period: int | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("TwilioProvider needs from_number or messaging_service_sid")
        self._local = threading.local()  # one client per thread: requests sessions are not thread-safe
        self._clients: list = []
        self._lock = threading.Lock()
        _load_twilio()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from twilio.rest import Client

            http = _twilio_http_client_class()(base_url=self.base_url, timeout=self.timeout)
            client = Client(self.account_sid, self.auth_token, http_client=http)
            # TWILIO_EDGE/TWILIO_REGION would rewrite the host again (127.0.0.1 -> 127.sydney.au1...).
            client.edge = None
            client.region = None
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def warm(self) -> None:
        """Import the library's lazily loaded message resource now (it takes a while, under the import lock)."""
        _ = self._client().messages

    def send(self, to: str, body: str, callback_url: str | None, notification=None) -> ProviderResult:
        """Create the message at Twilio; raise Transient, Permanent or Unknown when it did not plainly work."""
        import requests
        from twilio.base.exceptions import TwilioException

        client = self._client()
        kwargs = {"to": to, "body": body}
        if callback_url:
            kwargs["status_callback"] = callback_url
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        validity = validity_period(getattr(notification, "valid_until", None)) or self.validity_period
        if validity:
            kwargs["validity_period"] = validity
        try:
            message = client.messages.create(**kwargs)
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            code = getattr(exc, "code", None)
            text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or str(exc)
            raise classify_twilio_error(status, code, str(text)[:500], client.http_client.last_headers) from None
        except requests.exceptions.RequestException as exc:
            raise _classify_network_error(exc) from None
        if not getattr(message, "sid", None):
            raise Unknown("the answer carried no message sid")
        return ProviderResult(message.sid, STATUS_MAP.get(str(message.status or "queued"), "sent"))

    def lookup(self, to: str, body: str, since: datetime, notification=None) -> Found | None:
        """Find a message to ``to`` with ``body`` created since ``since`` (reconciling an unknown send)."""
        import requests
        from twilio.base.exceptions import TwilioException

        client = self._client()
        try:
            # Newest first; DateSent filters are day-granular and miss queued messages, so filter here.
            messages = client.messages.list(to=to, limit=50, page_size=50)
        except TwilioException as exc:
            raise classify_twilio_error(getattr(exc, "status", None), getattr(exc, "code", None), str(exc)) from None
        except requests.exceptions.RequestException as exc:
            raise Transient(f"lookup failed: {exc}") from None
        floor = since - timedelta(minutes=1)
        for message in messages:
            created = message.date_created
            if created is not None and created < floor:
                continue
            if (message.body or "").strip() == body.strip():
                code = getattr(message, "error_code", None)
                return Found(message.sid, STATUS_MAP.get(str(message.status), "sent"), None if code is None else str(code))
        return None

    def close(self) -> None:
        """Close the HTTP sessions of every thread's client."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            session = getattr(client.http_client, "session", None)
            if session is not None:
                session.close()

