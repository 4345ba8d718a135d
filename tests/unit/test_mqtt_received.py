"""What the MQTT network thread queues for the ingest worker (service/mqtt_ingest.py ``Received``)."""

from __future__ import annotations

from datetime import datetime

import paho.mqtt.client as mqtt

from config.settings import parse_mqtt_url
from service.mqtt_ingest import MqttIngest, Received


def _ingest() -> MqttIngest:
    return MqttIngest(parse_mqtt_url("mqtt://127.0.0.1:1"), "ews", "ews-test-received", lambda messages: None)


def _message(topic: bytes, payload: bytes = b'{"values": {}}', mid: int = 7) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid=mid, topic=topic)
    message.payload, message.qos, message.retain = payload, 1, False
    return message


def test_the_queue_holds_what_the_worker_needs_not_pahos_message():
    ingest = _ingest()
    ingest._on_message(None, None, _message(b"ews/stations/LWT-001/readings", b'{"ts": 1}', mid=42))
    received = ingest._queue.get_nowait()
    assert type(received) is Received
    assert received[:5] == ("ews/stations/LWT-001/readings", b'{"ts": 1}', 42, 1, False)
    assert isinstance(received.received_at, datetime) and received.received_at.tzinfo is not None


def test_a_topic_that_is_no_utf8_is_queued_under_a_name_no_station_has():
    ingest = _ingest()
    ingest._on_message(None, None, _message(b"ews/stations/\xff/readings"))
    received = ingest._queue.get_nowait()
    assert received.topic == "(topic not UTF-8)" and received.mid == 7
