"""SMS fault drills against ``ews run`` with the Twilio provider pointed at the local fake:
SIGKILL in the middle of a fan-out, and a provider that answers 500 for a while."""

from __future__ import annotations

import collections
import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from service.bench.common import add_subscribers
from tests.drills.helpers import StreamPublisher, iso, wait_until
from sinks.twilio import FakeTwilio
from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.service_process import ServiceProcess, sqlite_count
from tests.support.services import make_services

pytestmark = [pytest.mark.drill, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (apt-get install mosquitto)")]

STATION = "PKR-LASKAP"  # warns Malili/Laskap and Malili/Pongkeru; AWAS at 3.0 m
AREA = {"kecamatan": "Malili", "desa": "Laskap"}


def _prepared(tmp_path, subscribers: int) -> tuple[str, list[str]]:
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    services = make_services(database_url)
    phones = add_subscribers(services.engine, [AREA], per_area=subscribers)
    services.engine.dispose()
    return database_url, phones


def _service(tmp_path, broker_url, database_url, prefix, fake: FakeTwilio, rate: float) -> ServiceProcess:
    service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker_url, prefix=prefix,
                             client_id=f"ews-drill-{uuid.uuid4().hex[:8]}",
                             env={**fake.env(), "EWS_SMS_MAX_PER_SECOND": f"{rate:g}"})
    service.env["EWS_PUBLIC_URL"] = service.base_url
    return service


def _raise_awas(broker_url: str, prefix: str) -> None:
    publisher = StreamPublisher(broker_url)
    body = {"ts": iso(datetime.now(timezone.utc).replace(microsecond=0)), "values": {"water_level": 3.4}}
    publisher.stream([(f"{prefix}/stations/{STATION}/readings", json.dumps(body).encode())], rate=1)
    publisher.wait_all(30)
    publisher.close()


def _deliveries(fake: FakeTwilio) -> tuple[collections.Counter, int]:
    """How many SMS each phone was sent, and how many of them were one too many."""
    per_phone = collections.Counter(m["to"] for m in fake.accepted())
    return per_phone, sum(n - 1 for n in per_phone.values())


def _until_nothing_is_left_to_send(database_url: str, timeout: float) -> None:
    """No notification left pending, sending or unknown; then a moment in which a late duplicate would show."""
    wait_until(lambda: sqlite_count(database_url, "SELECT COUNT(*) FROM notifications WHERE status IN "
                                                  "('pending', 'sending', 'unknown')") == 0, timeout,
               "no notification left pending, sending or unknown")
    time.sleep(1.0)


def test_sigkill_during_fanout_reaches_everyone_with_bounded_duplicates(tmp_path, figure):
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    count, rate = 1000, 50
    database_url, phones = _prepared(tmp_path, count)
    with private_mosquitto() as broker, FakeTwilio(latency=(0.03, 0.08)) as fake:
        service = _service(tmp_path, broker.url, database_url, prefix, fake, rate).start()
        try:
            _raise_awas(broker.url, prefix)
            wait_until(lambda: len(fake.creates()) >= 300, 60, "300 SMS before the kill")
            service.kill()
            at_kill = len(fake.creates())
            service.start()
            wait_until(lambda: {m["to"] for m in fake.accepted()} >= set(phones), 120, "every subscriber's SMS")
            _until_nothing_is_left_to_send(database_url, 120)
        finally:
            service.stop()
        per_phone, duplicates = _deliveries(fake)
    concurrency = max(4, -(-rate * 4 // 10) + 2)  # the dispatcher's pool: max(4, ceil(0.4 x rate) + 2)
    figure("SMS accepted when killed", at_kill)
    figure("duplicates", f"{duplicates} (in-flight window {concurrency})")
    figure.summary(f"SIGKILL after {at_kill} of {count} SMS: {len(per_phone)} of {count} subscribers reached, "
                   f"{duplicates} duplicates (bound: {concurrency} in flight)")
    assert set(per_phone) == set(phones)
    assert duplicates <= concurrency


def test_provider_500s_then_back_delivers_every_notification_once(tmp_path, figure):
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    count, outage = 30, 8.0
    database_url, phones = _prepared(tmp_path, count)
    with private_mosquitto() as broker, FakeTwilio(latency=0.01) as fake:
        fake.script.extend([("status", 500)] * 100_000)  # every create fails until the script is cleared
        service = _service(tmp_path, broker.url, database_url, prefix, fake, 10).start()
        try:
            _raise_awas(broker.url, prefix)
            wait_until(lambda: len(fake.creates()) >= 1, 30, "the first (failing) SMS request")
            time.sleep(outage)
            with fake._lock:
                fake.script.clear()
            failed_requests = len(fake.creates())
            back = time.monotonic()
            wait_until(lambda: {m["to"] for m in fake.accepted()} >= set(phones), 150, "every subscriber's SMS")
            delivered_s = time.monotonic() - back
            _until_nothing_is_left_to_send(database_url, 60)
        finally:
            service.stop()
        per_phone, duplicates = _deliveries(fake)
    figure("requests answered 500", failed_requests)
    figure("provider back to everyone reached", f"{delivered_s:.1f} s (unknown outcomes wait 60 s for reconciliation)")
    figure.summary(f"provider answered 500 for {outage:g} s ({failed_requests} requests): {len(per_phone)} of {count} "
                   f"reached {delivered_s:.0f} s after it recovered, {duplicates} duplicates")
    assert set(per_phone) == set(phones)
    assert duplicates == 0
