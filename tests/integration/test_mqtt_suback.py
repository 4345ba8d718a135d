"""The ingest is ready only once the broker granted its subscriptions (its SUBACK), and says so when refused.

Mosquitto grants every subscription and filters by ACL at delivery, but a broker may answer a
SUBSCRIBE with 0x80 (MQTT 3.1.1 section 3.9.3: failure), e.g. one whose ACL denies a filter:
the service would then be connected and receive nothing. A minimal broker on a socket speaks
the four packets this needs, and answers the SUBACK the test asks for: the broker's side is
the edge here, what the ingest does with the answer is ours.
"""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from config.settings import parse_mqtt_url
from service.mqtt_ingest import MqttIngest
from tests.support.infra import wait_until

CONNACK, PINGRESP = b"\x20\x02\x00\x00", b"\xd0\x00"


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    """One MQTT control packet: (its type nibble, its variable header and payload)."""
    head = conn.recv(1)
    if not head:
        raise ConnectionError
    length, shift = 0, 0
    while True:
        byte = conn.recv(1)[0]
        length, shift = length | (byte & 0x7F) << shift, shift + 7
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head[0] >> 4, body


def filters_in(body: bytes) -> int:
    """How many topic filters a SUBSCRIBE body (after its packet id) holds."""
    count, at = 0, 2
    while at < len(body):
        at += 2 + int.from_bytes(body[at:at + 2], "big") + 1
        count += 1
    return count


class TinyBroker:
    """CONNACK, SUBACK with ``code`` for every filter, PINGRESP: enough for a client to connect and subscribe."""

    def __init__(self, code: int) -> None:
        self.code, self.subscribed = code, threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"mqtt://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        try:
            while True:
                kind, body = read_packet(conn)
                if kind == 1:
                    conn.sendall(CONNACK)
                elif kind == 8:
                    codes = bytes([self.code]) * filters_in(body)
                    conn.sendall(bytes([0x90, 2 + len(codes)]) + body[:2] + codes)
                    self.subscribed.set()
                elif kind == 12:
                    conn.sendall(PINGRESP)
                elif kind == 14:
                    return
        except (ConnectionError, OSError, IndexError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("code", [0x01, 0x80], ids=["granted", "refused"])
def test_the_ingest_is_ready_only_when_the_broker_granted_its_subscriptions(code, caplog):
    caplog.set_level(logging.INFO, logger="service.mqtt_ingest")
    broker, changes = TinyBroker(code), []
    ingest = MqttIngest(parse_mqtt_url(broker.url), "ews/v1", "ews-suback-test", lambda messages: [],
                        on_connection_change=changes.append)
    ingest.start()
    try:
        assert broker.subscribed.wait(15), "the client never subscribed"
        if code == 0x80:
            wait_until(lambda: "refused" in caplog.text, 15, "the refused subscriptions logged")
            assert not ingest.wait_connected(1) and not ingest.ready() and changes == []
            assert "ews broker acl" in caplog.text
        else:
            assert ingest.wait_connected(15) and ingest.ready() and changes == [True]
    finally:
        ingest.stop()
        broker.close()
