"""The PUBACKs of a batch as one byte string (MQTT 3.1.1 section 3.4), and the paho queue it goes into."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from service.mqtt_acks import puback_packet


def test_each_puback_is_the_fixed_header_and_the_packet_id_in_order():
    assert puback_packet([1, 258, 65535]) == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 255, 255])


def test_no_message_no_bytes():
    assert puback_packet([]) == b""


def test_the_installed_paho_has_the_queue_the_batch_goes_into():
    # Without it ack_all falls back to one Client.ack per message: correct, but the slow path again.
    assert callable(getattr(mqtt.Client, "_packet_queue", None))
