"""An embedded MQTT broker (amqtt) so ``ews run`` works on a laptop with nothing else installed.

For trying the service out only. amqtt 0.12.1 speaks MQTT 3.1.1 only, keeps its
queues in memory, and does not redeliver an unacknowledged QoS 1 message after a
reconnect (Yakifo/amqtt#401): a crash can lose readings. Production uses Mosquitto
(``config/mosquitto.conf``) through ``EWS_MQTT_URL``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

log = logging.getLogger(__name__)

WARNING = (
    "embedded MQTT broker (amqtt) on {host}:{port}: for trying EWS out only, NOT for production "
    "(queues in memory, no redelivery of unacknowledged messages); set EWS_MQTT_URL to a Mosquitto broker"
)


class BrokerStartError(Exception):
    """The embedded broker could not start (usually: the port is taken)."""


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

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        """Start the broker and wait until it listens; raise ``BrokerStartError`` otherwise."""
        _check_port_free(self.host, self.port)
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


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise BrokerStartError(
                f"EWS_EMBEDDED_MQTT_PORT: port {port} on {host} is already in use; "
                f"set EWS_MQTT_URL=mqtt://{host}:{port} to use the broker already running there, "
                "or EWS_EMBEDDED_MQTT_PORT to another port"
            ) from None
