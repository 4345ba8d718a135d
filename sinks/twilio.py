"""A local HTTP server speaking Twilio's Messages API, for tests with the real ``twilio`` library.

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` creates a message: 201 with Twilio-shaped JSON.
- ``GET  /2010-04-01/Accounts/{sid}/Messages.json?To=…`` lists messages (newest first), and
  ``GET …/Messages/{MessageSid}.json`` fetches one.
- Basic auth is checked (401, code 20003, like Twilio).
- ``latency`` (seconds, or a ``(low, high)`` range) delays every answer.
- ``script`` scripts the answers to the next creates, one action each:
  ``"ok"``, ``("status", 500)``, ``("429", retry_after)``, ``("error", 400, 21211)``,
  ``"drop_after_accept"`` (store the message, then close the connection without answering),
  ``"drop_before_accept"``, ``("delay", seconds)`` (answer after that long: a client timeout).
- ``fail_numbers`` maps a ``To`` number to a Twilio error code (400) returned every time.
- ``outage`` (an HTTP status such as 500) answers *every* request with it, creates and lookups
  alike (Twilio having a bad day), until set back to None; ``stop()`` and ``start()`` again on
  the same ``port`` is Twilio not listening at all for a while.
- ``auto_callbacks`` (e.g. ``["sent", "delivered"]``) fires signed status callbacks to the
  message's ``StatusCallback`` after each create; ``fire_status()`` fires one by hand.

Every request is recorded in ``requests`` with its arrival time (``time.monotonic()``, and the
wall clock in UTC for comparing with the times the service records): when its first bytes reached
this host, as the kernel stamped them (Linux; elsewhere when its handler started), so a busy test
process does not record requests that arrived apart as bunched together.
"""

from __future__ import annotations

import base64
import collections
import email.utils
import json
import random
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twilio.request_validator import RequestValidator

ERROR_MESSAGES = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    20429: "Too Many Requests",
    20003: "Authenticate",
}


class Recorded:
    """One request the fake received: ``at`` (monotonic) and ``wall`` (UTC) when it arrived."""

    def __init__(self, at: float, method: str, path: str, form: dict, wall: datetime | None = None) -> None:
        self.at = at
        self.method = method
        self.path = path
        self.form = form
        self.wall = wall

    def __repr__(self) -> str:
        return f"Recorded({self.at:.3f}, {self.method} {self.path}, {self.form})"


class FakeTwilio:
    """The fake server; use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, account_sid: str = "AC" + "f" * 32, auth_token: str = "fake-auth-token",
                 latency: float | tuple[float, float] = 0.0, port: int = 0) -> None:
        self.port = port
        self.outage: int | None = None
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.latency = latency
        self.script: collections.deque = collections.deque()
        self.fail_numbers: dict[str, int] = {}
        self.auto_callbacks: list[str] = []
        self.requests: list[Recorded] = []
        self.messages: dict[str, dict] = {}
        self.callbacks: list[tuple[str, dict, int]] = []  # (url, form, HTTP status answered)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._callback_threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FakeTwilio":
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]  # the same port after a stop() and start()
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-twilio", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for thread in list(self._callback_threads):
            thread.join(10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give as ``TWILIO_API_BASE_URL`` (also while stopped)."""
        return f"http://127.0.0.1:{self.port}"

    def env(self, public_url: str = "http://127.0.0.1:8080", from_number: str = "BPBDLUTIM") -> dict[str, str]:
        """The environment variables that point the service at this fake."""
        return {
            "EWS_SMS_PROVIDER": "twilio",
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM_NUMBER": from_number,
            "TWILIO_API_BASE_URL": self.url,
            "EWS_PUBLIC_URL": public_url,
        }

    # -- what it saw ----------------------------------------------------------------------------

    def creates(self) -> list[Recorded]:
        """The POSTs to Messages.json, in arrival order."""
        with self._lock:
            return sorted((r for r in self.requests if r.method == "POST"), key=lambda r: r.at)

    def accepted(self) -> list[dict]:
        """The messages it created (and so would deliver), in creation order."""
        with self._lock:
            return list(self.messages.values())

    # -- callbacks ------------------------------------------------------------------------------

    def sign(self, url: str, form: dict) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for ``form`` posted to ``url``."""
        return RequestValidator(self.auth_token).compute_signature(url, form)

    def fire_status(self, sid: str, status: str, error_code: int | None = None, *, url: str | None = None,
                    signature: str | None = None) -> int:
        """POST a status callback for message ``sid``; return the HTTP status the service answered."""
        message = self.messages[sid]
        url = url or message.get("_status_callback")
        if not url:
            raise ValueError(f"message {sid} has no StatusCallback")
        form = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid, "From": message["from"] or "",
            "To": message["to"], "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        return self.post_signed(url, form, signature=signature)

    def post_signed(self, url: str, form: dict, *, signature: str | None = None) -> int:
        """POST ``form`` to ``url`` the way Twilio does, signed unless ``signature`` is given."""
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.sign(url, form) if signature is None else signature,
            "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
        })
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        with self._lock:
            self.callbacks.append((url, form, status))
        return status

    def _auto_callbacks(self, sid: str) -> None:
        def run():
            for status in self.auto_callbacks:
                self.fire_status(sid, status)
                with self._lock:
                    self.messages[sid]["status"] = status

        thread = threading.Thread(target=run, daemon=True)
        self._callback_threads.append(thread)
        thread.start()

    # -- the API --------------------------------------------------------------------------------

    def _next_action(self, to: str):
        with self._lock:
            if to in self.fail_numbers:
                return ("error", 400, self.fail_numbers[to])
            return self.script.popleft() if self.script else "ok"

    def _create(self, form: dict) -> dict:
        now = datetime.now(timezone.utc)
        sid = "SM" + uuid.uuid4().hex
        message = {
            "account_sid": self.account_sid, "api_version": "2010-04-01", "body": form.get("Body", ""),
            "date_created": email.utils.format_datetime(now), "date_sent": None,
            "date_updated": email.utils.format_datetime(now), "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued", "subresource_uris": {},
            "to": form.get("To"), "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "_status_callback": form.get("StatusCallback"),
        }
        with self._lock:
            self.messages[sid] = message
        return message


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python names it on some builds only


class _Server(ThreadingHTTPServer):
    """Asks the kernel to stamp each received segment with its arrival time (Linux), read by ``arrival``."""

    def server_bind(self) -> None:
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # inherited by accepted sockets
        except OSError:
            pass
        super().server_bind()


def arrival(connection) -> tuple[float, datetime]:
    """When the request's first bytes reached this host (the kernel's stamp), as (monotonic, UTC); else now.

    Read before the request is: a busy test process that reaches a request late does not record
    it late, so requests that arrived apart are not recorded bunched together."""
    now, wall = time.monotonic(), time.time()
    try:
        _, ancillary, _, _ = connection.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except (OSError, AttributeError):
        ancillary = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            stamp = seconds + nanoseconds / 1e9
            return now - (wall - stamp), datetime.fromtimestamp(stamp, timezone.utc)
    return now, datetime.fromtimestamp(wall, timezone.utc)


def public(message: dict) -> dict:
    """The message as Twilio shows it (without the fake's private fields)."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio
    protocol_version = "HTTP/1.0"  # one request per connection: no stale keep-alive sockets

    def log_message(self, format, *args):  # noqa: A002 - quiet tests
        return

    def _sleep(self):
        latency = self.fake.latency
        if isinstance(latency, tuple):
            latency = random.uniform(*latency)
        if latency:
            time.sleep(latency)

    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, headers: dict | None = None, to: str = "") -> None:
        message = ERROR_MESSAGES.get(code, "Error").format(to=to)
        self._json(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                            "status": status}, headers)

    def _authorised(self) -> bool:
        expected = base64.b64encode(f"{self.fake.account_sid}:{self.fake.auth_token}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def setup(self) -> None:
        self.arrived = arrival(self.request)
        super().setup()

    def _record(self, form: dict) -> None:
        at, wall = self.arrived
        with self.fake._lock:
            self.fake.requests.append(Recorded(at, self.command, self.path, form, wall))

    def _html(self, status: int, text: str) -> None:
        data = f"<html><body>{text}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _outage(self) -> bool:
        if self.fake.outage is None:
            return False
        self._html(self.fake.outage, "Service Unavailable")
        return True

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
        self._record(form)
        if self._outage():
            return None
        path = urllib.parse.urlsplit(self.path).path
        if path != f"/2010-04-01/Accounts/{self.fake.account_sid}/Messages.json":
            return self._error(404, 20404)
        if not self._authorised():
            return self._error(401, 20003)
        if not form.get("To"):
            return self._json(400, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400})
        action = self.fake._next_action(form["To"])
        self._sleep()
        if action == "ok":
            message = self.fake._create(form)
            self._json(201, public(message))
            if self.fake.auto_callbacks and form.get("StatusCallback"):
                self.fake._auto_callbacks(message["sid"])
            return None
        if action == "drop_after_accept":
            self.fake._create(form)
            return self._drop()
        if action == "drop_before_accept":
            return self._drop()
        kind = action[0]
        if kind == "status":
            return self._html(action[1], "Internal Server Error")
        if kind == "429":
            return self._error(429, 20429, {"Retry-After": str(action[1])})
        if kind == "error":
            return self._error(action[1], action[2], to=form["To"])
        if kind == "delay":
            time.sleep(action[1])
            message = self.fake._create(form)
            return self._json(201, public(message))
        raise ValueError(f"unknown scripted action {action!r}")

    def do_GET(self):  # noqa: N802
        self._record({})
        if self._outage():
            return None
        parts = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query).items()}
        base = f"/2010-04-01/Accounts/{self.fake.account_sid}/Messages"
        if not self._authorised():
            return self._error(401, 20003)
        self._sleep()
        if parts.path == base + ".json":
            with self.fake._lock:
                items = [public(m) for m in reversed(list(self.fake.messages.values()))]
            if query.get("To"):
                items = [m for m in items if m["to"] == query["To"]]
            size = int(query.get("PageSize", 50))
            items = items[:size]
            return self._json(200, {
                "messages": items, "end": max(len(items) - 1, 0), "first_page_uri": parts.path, "next_page_uri": None,
                "page": 0, "page_size": size, "previous_page_uri": None, "start": 0, "uri": self.path,
            })
        if parts.path.startswith(base + "/") and parts.path.endswith(".json"):
            sid = parts.path[len(base) + 1:-5]
            with self.fake._lock:
                message = self.fake.messages.get(sid)
            if message is None:
                return self._error(404, 20404)
            return self._json(200, public(message))
        return self._error(404, 20404)
