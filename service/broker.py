"""An embedded MQTT broker (amqtt) so ``ews run`` works on a laptop with nothing else installed.

For trying the service out only. amqtt 0.12.1 speaks MQTT 3.1.1 only, keeps its
queues in memory, and does not redeliver an unacknowledged QoS 1 message after a
reconnect (Yakifo/amqtt#401): a crash can lose readings. Production uses Mosquitto
(``config/mosquitto.conf``) through ``EWS_MQTT_URL``.

When its port is taken (a laptop that already runs Mosquitto on 1883), the broker takes
the next free one and says so. ``ews run`` records where it listens in the database
(``local_endpoints``), and ``ews simulate`` and ``ews gateway`` started without
``EWS_MQTT_URL`` on the same database find it there (``recorded_broker_url``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from alerts.errors import BrokerStartError
from config.settings import Settings
from service.db.schema import local_endpoints

log = logging.getLogger(__name__)

WARNING = (
    "embedded MQTT broker (amqtt) on {host}:{port}: for trying EWS out only, NOT for production "
    "(queues in memory, no redelivery of unacknowledged messages); set EWS_MQTT_URL to a Mosquitto broker"
)


PORT_TRIES = 20  # the configured port and the next 19
ENDPOINT = "embedded_mqtt"  # its row in local_endpoints


def broker_config(host: str, port: int) -> dict:
    """The amqtt configuration: one TCP listener; clients must send a username (any)."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 500}},
        # allow_anonymous must be False: amqtt keeps no offline queue for anonymous sessions,
        # so a client that sends a username (any) is accepted and keeps its persistent session.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    }


class EmbeddedBroker:
    """amqtt running on its own event loop in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port_chosen = False

    def choose_port(self) -> int:
        """Settle on the port: the wanted one, or the next free one (said in one line); ``url`` then holds it."""
        if not self._port_chosen:
            wanted = self.port
            self.port = free_port_from(self.host, wanted)
            self._port_chosen = True
            if self.port != wanted:
                log.warning("embedded MQTT broker: port %d on %s is taken (another broker?); listening on %d "
                            "instead, where ews simulate and ews gateway on this database find it",
                            wanted, self.host, self.port)
        return self.port

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        """Start the broker on its port, or the next free one, and wait until it listens; raise ``BrokerStartError`` otherwise."""
        self.choose_port()
        self._thread = threading.Thread(target=self._run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise BrokerStartError(f"embedded MQTT broker did not start within {timeout:g} s")
        if self._error is not None:
            raise BrokerStartError(f"embedded MQTT broker failed to start: {self._error}")
        log.warning(WARNING.format(host=self.host, port=self.port))
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._broker = Broker(broker_config(self.host, self.port), loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start(), which raises it in the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread."""
        if self._loop is None or self._broker is None or self._error is not None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
        except Exception:  # a broker that fails to shut down cleanly must not block our own shutdown
            log.exception("embedded MQTT broker did not shut down cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def url(self) -> str:
        """The URL clients use to reach this broker (with the username it requires)."""
        return f"mqtt://ews@{self.host}:{self.port}"


def free_port_from(host: str, port: int, tries: int = PORT_TRIES) -> int:
    """``port`` if nothing listens there, else the next free one (at most ``tries`` ports)."""
    for candidate in range(port, min(port + tries, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise BrokerStartError(
        f"EWS_EMBEDDED_MQTT_PORT: ports {port} to {min(port + tries, 65536) - 1} on {host} are all in use; "
        f"set EWS_MQTT_URL=mqtt://{host}:{port} to use the broker already running there, "
        "or EWS_EMBEDDED_MQTT_PORT to a free port")


# --- where the embedded broker listens, for the local tools ------------------------------


def record_endpoint(engine: Engine, url: str, holder: str, now: datetime) -> None:
    """Record that this ``ews run`` (``holder``) serves the embedded broker at ``url``."""
    with engine.begin() as conn:
        conn.execute(sa.delete(local_endpoints).where(local_endpoints.c.name == ENDPOINT))
        conn.execute(sa.insert(local_endpoints).values(name=ENDPOINT, url=url, holder=holder, updated_at=now))


def forget_endpoint(engine: Engine, holder: str) -> None:
    """Remove the record at a clean stop (if it is still ours)."""
    try:
        with engine.begin() as conn:
            conn.execute(sa.delete(local_endpoints).where(local_endpoints.c.name == ENDPOINT,
                                                          local_endpoints.c.holder == holder))
    except SQLAlchemyError:
        log.warning("could not remove the embedded broker's record; the next ews run replaces it")


def may_have_recorded(settings: Settings) -> bool:
    """Whether an ``ews run`` on ``settings``' database may have recorded its embedded broker there.

    Not when ``EWS_MQTT_URL`` is set (that broker is the one), for an in-memory SQLite database,
    or a SQLite file that does not exist (never create one just to ask).
    """
    url = settings.database_url
    if settings.mqtt is not None or url == "sqlite://":
        return False
    return not (url.startswith("sqlite:///") and not os.path.isfile(url.removeprefix("sqlite:///")))


def recorded_broker_url(engine: Engine) -> str | None:
    """Where ``ews run`` on ``engine``'s database runs its embedded broker, or None."""
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(local_endpoints.c.url).where(local_endpoints.c.name == ENDPOINT)).scalar()
    except SQLAlchemyError:  # not migrated yet, or unreachable: nothing recorded that we can read
        return None
