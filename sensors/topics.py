"""MQTT topic names and payload limits of the gateway → service contract (spec section 1).

Topics, with ``prefix`` from ``EWS_MQTT_TOPIC_PREFIX`` (default ``ews/v1``):

- ``{prefix}/stations/{station_id}/readings``: samples, QoS 1, one JSON object or an array;
- ``{prefix}/stations/{station_id}/status``: retained ``online`` / ``offline`` (the gateway's will);
- ``{prefix}/exercise/stations/{station_id}/readings``: a drill's samples (same payload), taken only
  while an exercise started through the API covers the station (spec section 10).
- ``{prefix}/stations/{station_id}/backlog``: a gateway's backlog flush (spec section 16);
- ``{prefix}/sirens/{siren_id}/command`` and ``.../ack``: the siren downlink (spec section 12).

Pure functions only: no paho here, so the ingest side and tests can use them freely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

DEFAULT_PREFIX = "ews/v1"
STATION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

MAX_PAYLOAD_BYTES = 256 * 1024  # spec: a payload is at most 256 KiB
MAX_SAMPLES_PER_PAYLOAD = 1000  # spec: an array holds at most 1,000 samples

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"


def normalize_prefix(prefix: str | None) -> str:
    """The prefix without leading or trailing slashes; the default when empty."""
    cleaned = (prefix or "").strip().strip("/")
    return cleaned or DEFAULT_PREFIX


def is_station_id(station_id: str) -> bool:
    """True when ``station_id`` is a valid station id (``^[A-Za-z0-9_-]{1,64}$``)."""
    return bool(STATION_ID_RE.match(station_id or ""))


def _checked(station_id: str) -> str:
    if not is_station_id(station_id):
        raise ValueError(f"invalid station id {station_id!r}: use 1-64 letters, digits, '-' or '_'")
    return station_id


def _topic(prefix: str, item_id: str, leaf: str, collection: str = "stations") -> str:
    """``{prefix}/{collection}/{item_id}/{leaf}``, the id checked (the inverse of ``_parse``)."""
    return f"{normalize_prefix(prefix)}/{collection}/{_checked(item_id)}/{leaf}"


def _filter(prefix: str, leaf: str, collection: str = "stations") -> str:
    """The subscription filter matching ``leaf`` of every item of ``collection``."""
    return f"{normalize_prefix(prefix)}/{collection}/+/{leaf}"


def readings_topic(prefix: str, station_id: str) -> str:
    """The topic a station's samples are published on."""
    return _topic(prefix, station_id, "readings")


def status_topic(prefix: str, station_id: str) -> str:
    """The retained ``online``/``offline`` topic of a station's gateway."""
    return _topic(prefix, station_id, "status")


def exercise_readings_topic(prefix: str, station_id: str) -> str:
    """The topic a station's drill samples are published on (``ews simulate --exercise ID``)."""
    return _topic(prefix, station_id, "readings", "exercise/stations")


def exercise_readings_subscription(prefix: str) -> str:
    """The subscription filter matching every station's exercise readings topic."""
    return _filter(prefix, "readings", "exercise/stations")


def parse_exercise_readings_topic(prefix: str, topic: str) -> str | None:
    """The station id of an exercise readings topic, or None when ``topic`` is not one."""
    head = normalize_prefix(prefix) + "/exercise"
    return _parse(head, topic, "readings") if topic.startswith(head + "/") else None


def backlog_topic(prefix: str, station_id: str) -> str:
    """The topic a gateway flushes its backlog on after an outage (spec section 16)."""
    return _topic(prefix, station_id, "backlog")


def readings_subscription(prefix: str) -> str:
    """The subscription filter matching every station's readings topic."""
    return _filter(prefix, "readings")


def backlog_subscription(prefix: str) -> str:
    """The subscription filter matching every station's backlog topic (spec section 16)."""
    return _filter(prefix, "backlog")


def status_subscription(prefix: str) -> str:
    """The subscription filter matching every station's status topic."""
    return _filter(prefix, "status")


def _parse(prefix: str, topic: str, leaf: str, collection: str = "stations") -> str | None:
    """The id of a ``{prefix}/{collection}/{id}/{leaf}`` topic, or None when ``topic`` is not one."""
    head = f"{normalize_prefix(prefix)}/{collection}/"
    if not topic.startswith(head):
        return None
    item_id, sep, rest = topic[len(head):].partition("/")
    if not sep or rest != leaf or not is_station_id(item_id):
        return None
    return item_id


def parse_readings_topic(prefix: str, topic: str) -> str | None:
    """The station id of a readings topic, or None when ``topic`` is not one (or the id is invalid)."""
    return _parse(prefix, topic, "readings")


def parse_backlog_topic(prefix: str, topic: str) -> str | None:
    """The station id of a backlog topic, or None when ``topic`` is not one."""
    return _parse(prefix, topic, "backlog")


def parse_status_topic(prefix: str, topic: str) -> str | None:
    """The station id of a status topic, or None when ``topic`` is not one."""
    return _parse(prefix, topic, "status")


def siren_command_topic(prefix: str, siren_id: str) -> str:
    """The topic a siren's controller reads its commands from (spec section 12)."""
    return _topic(prefix, siren_id, "command", "sirens")


def siren_ack_topic(prefix: str, siren_id: str) -> str:
    """The topic a siren's controller answers on."""
    return _topic(prefix, siren_id, "ack", "sirens")


def siren_ack_subscription(prefix: str) -> str:
    """The subscription filter matching every siren's ack topic."""
    return _filter(prefix, "ack", "sirens")


def siren_command_subscription(prefix: str) -> str:
    """The filter matching every siren's command topic (what the service may write)."""
    return _filter(prefix, "command", "sirens")


def parse_siren_topic(prefix: str, topic: str, leaf: str) -> str | None:
    """The siren id of a ``.../sirens/{id}/{leaf}`` topic, or None when ``topic`` is not one."""
    return _parse(prefix, topic, leaf, "sirens")


def encode_sample(sample: dict[str, Any]) -> bytes:
    """One sample as compact UTF-8 JSON."""
    return json.dumps(sample, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def pack_batches(
    encoded: Iterable[bytes],
    max_samples: int = MAX_SAMPLES_PER_PAYLOAD,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> Iterator[tuple[int, bytes]]:
    """Group encoded samples into payloads within the spec limits.

    Yields ``(count, payload)``: a single sample stays a JSON object, two or more
    become a JSON array of at most ``max_samples`` items and ``max_bytes`` bytes.
    A sample that alone exceeds ``max_bytes`` is still yielded alone (the service
    will reject it as ``too_large``; dropping it silently here would hide the fault).
    """
    group: list[bytes] = []
    size = 2  # the brackets
    for item in encoded:
        extra = len(item) + (1 if group else 0)
        if group and (len(group) >= max_samples or size + extra > max_bytes):
            yield _join(group)
            group, size = [], 2
            extra = len(item)
        group.append(item)
        size += extra
    if group:
        yield _join(group)


def _join(group: Sequence[bytes]) -> tuple[int, bytes]:
    if len(group) == 1:
        return 1, group[0]
    return len(group), b"[" + b",".join(group) + b"]"
