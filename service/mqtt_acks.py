"""Acknowledging a committed batch to the broker: every PUBACK of the batch in one write.

paho-mqtt acknowledges one message per ``Client.ack`` call: each queues a 4-byte packet, wakes
the network thread through its socket pair and is sent with a system call of its own, while
the worker and the network thread take turns at the interpreter lock. For a batch of 1,000
that cost about as much as judging it (docs/performance.md). The PUBACKs of a batch, in the
order the messages came, are instead queued as one packet: the same bytes on the wire, one
wake-up, one ``send``. A QoS 2 message (none of our publishers send them) is acknowledged
the ordinary way.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import paho.mqtt.client as mqtt

def puback_packet(mids: Sequence[int]) -> bytes:
    """The PUBACK packets (MQTT 3.1.1 section 3.4) of ``mids``, in order, as one byte string."""
    count = len(mids)
    ids = struct.pack(f"!{count}H", *mids)  # every packet id, big-endian, in one call
    # Each packet is the fixed header (PUBACK, remaining length 2) and its id: filled in by slices, not
    # packed one by one (that was half of acknowledging a batch).
    packets = bytearray(4 * count)
    packets[0::4] = bytes([mqtt.PUBACK]) * count
    packets[1::4] = b"\x02" * count
    packets[2::4], packets[3::4] = ids[0::2], ids[1::2]
    return bytes(packets)


def ack_all(client: mqtt.Client, messages: Sequence) -> None:
    """Acknowledge ``messages`` (received with ``manual_ack=True``; anything with their ``mid`` and ``qos``) in order."""
    mids = [message.mid for message in messages if message.qos == 1]
    if len(mids) < len(messages):  # QoS 0 needs nothing; QoS 2 is acknowledged the ordinary way
        for message in messages:
            if message.qos == 2:
                client.ack(message.mid, message.qos)
    if not mids:
        return
    queue = getattr(client, "_packet_queue", None)  # paho 2.x's own queue of outgoing packets
    if queue is None:  # a paho without it: one call per message, as its API offers
        for mid in mids:
            client.ack(mid, 1)
        return
    queue(mqtt.PUBACK, puback_packet(mids), 0, 1)
