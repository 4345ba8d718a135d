"""Small paho-mqtt 2.x helpers shared by ``ews simulate``, ``ews gateway`` and the service's MQTT ingest.

Only those entry points (and ``service.mqtt_ingest``) import this module, so paho stays out of the pure parts.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from config.settings import ConfigError, MqttUrl, parse_mqtt_url
from sensors import topics


# The same URL form as EWS_MQTT_URL, parsed by the same code.
Broker = MqttUrl


def parse_broker_url(raw: str) -> Broker:
    """Parse an MQTT URL; raise ValueError with a one-line reason when it is not one."""
    try:
        return parse_mqtt_url(raw)
    except ConfigError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


def default_broker_url(environ: Mapping[str, str] | None = None,
                       recorded: Callable[[], str | None] | None = None) -> str:
    """``EWS_MQTT_URL``, else the embedded broker of a single-machine ``ews run``.

    That broker may have moved to another port (its own was taken): ``recorded`` returns where
    ``ews run`` recorded it in the database, or None; the configured port is the fallback.
    """
    return resolve_broker_url(None, environ, recorded)[0]


def resolve_broker_url(given: str | None, environ: Mapping[str, str] | None = None,
                       recorded: Callable[[], str | None] | None = None) -> tuple[str, str]:
    """The broker URL and where it came from: ``--mqtt-url``, ``EWS_MQTT_URL``, ``ews run`` or the default."""
    env = os.environ if environ is None else environ
    if given:
        return given, "--mqtt-url"
    if env.get("EWS_MQTT_URL"):
        return env["EWS_MQTT_URL"], "EWS_MQTT_URL"
    found = recorded() if recorded is not None else None
    if found:
        return found, "ews run's embedded broker, recorded in the database"
    return f"mqtt://127.0.0.1:{env.get('EWS_EMBEDDED_MQTT_PORT') or 1883}", "the embedded broker's default port"


def default_prefix(environ: Mapping[str, str] | None = None) -> str:
    """``EWS_MQTT_TOPIC_PREFIX`` or ``ews/v1``."""
    env = os.environ if environ is None else environ
    return topics.normalize_prefix(env.get("EWS_MQTT_TOPIC_PREFIX"))


def make_client(
    broker: Broker,
    client_id: str,
    *,
    will: tuple[str, str] | None = None,
    clean_session: bool = True,
    max_inflight: int = 20,
    manual_ack: bool = False,
    username: str = "gateway",
) -> mqtt.Client:
    """A paho 2.x client (MQTT 3.1.1, callback API v2) with an optional retained QoS 1 will.

    ``username`` is sent when the URL has none.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,  # the embedded amqtt broker speaks 3.1.1 only
        manual_ack=manual_ack,
    )
    # An exception in a callback would kill the network thread (tech-notes §0 #4): log instead.
    client.suppress_exceptions = True
    # The embedded amqtt broker refuses clients without a username (any name will do; see
    # service/broker.py), so send one even when the URL has none. Mosquitto ignores it
    # unless it is configured with a password file.
    client.username_pw_set(broker.username or username, broker.password)
    if broker.tls:
        client.tls_set_context(ssl.create_default_context())
    if will:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.max_inflight_messages_set(max_inflight)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
