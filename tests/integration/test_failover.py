"""Failover ``EWS_SMS_PROVIDER=twilio,gammu``: the real ``twilio`` library against the local Twilio-compatible
server, and a real gammu-smsd on the dummy phone, on a real database (spec section 13)."""

from __future__ import annotations

import collections
import dataclasses
import time

import pytest

from service.bootstrap import Health, sms_dispatcher, spool_reader
from service.dispatch import GammuProvider, Router, TwilioProvider, make_provider
from sinks.twilio import FakeTwilio
from tests.integration.test_dispatch import Alerts, add, rows
from tests.support.gammu import GAMMU_SMSD, SKIP_REASON, GammuDaemon, settle
from tests.support.infra import wait_until
from tests.support.services import make_services

pytestmark = pytest.mark.skipif(GAMMU_SMSD is None, reason=SKIP_REASON)

PHONES = ["+6281211110001", "+6281211110002", "+6281211110003"]
INSTANCE = "failover-test"


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch):
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


@pytest.fixture
def daemon(tmp_path):
    with GammuDaemon(tmp_path / "gammu") as gammu:
        yield gammu


@pytest.fixture
def fake():
    server = FakeTwilio().start()
    yield server
    server.stop()


class Service:
    """One dispatching instance with ``twilio,gammu`` (failover after 1 s) and its spool reader, running."""

    def __init__(self, database_url, daemon, fake, twilio_timeout: float | None = None) -> None:
        env = {**fake.env(), "EWS_SMS_PROVIDER": "twilio,gammu", "EWS_GAMMU_SPOOL": str(daemon.spool),
               "EWS_SMS_FAILOVER_S": "1", "EWS_SMS_MAX_PER_SECOND": "50"}
        self.services = services = make_services(database_url, instance_id=INSTANCE, **env)
        self.router = make_provider(services.settings, services.metrics, services.engine, INSTANCE)
        if twilio_timeout is not None:  # a short HTTP timeout: a slow answer is "unknown" within a test's patience
            settings = services.settings
            twilio = TwilioProvider(settings.twilio_account_sid, settings.twilio_auth_token,
                                    from_number=settings.twilio_from_number, base_url=settings.twilio_api_base_url,
                                    timeout=twilio_timeout)
            self.router = Router([twilio, GammuProvider(daemon.spool)], failover_s=1.0, metrics=services.metrics,
                                 engine=services.engine, instance=INSTANCE)
        self.dispatcher = sms_dispatcher(services, self.router, backoff_base=0.05, backoff_max=0.3, reconcile_after=0.3)
        self.reader = spool_reader(services, self.router.provider("gammu"), settle_s=0.3)
        self.daemon, self.fake = daemon, fake
        for phone in PHONES:
            add(services, phone)
        self.alert = Alerts(services)
        self.dispatcher.start()
        self.reader.start()

    def event(self, type_, level, value, minutes):
        """An event of the alert; wait until each subscriber's message is sent; return those rows."""
        event_id = self.alert.event(type_, level, value, 0.2, minutes=minutes)
        self.dispatcher.wake()
        return wait_until(lambda: (got := rows(self.services, event_id=event_id)) and len(got) == len(PHONES)
                          and all(r.status == "sent" for r in got) and got, 90, f"the {type_} {level} to be sent")

    def received(self) -> collections.Counter:
        """(number, text) of every message that reached a phone, through either provider."""
        through_gammu = [self.daemon.message("sent", name) for name in self.daemon.files("sent")]
        through_twilio = [(m["to"], m["body"]) for m in self.fake.accepted()]
        return collections.Counter(through_gammu + through_twilio)

    def close(self) -> None:
        self.reader.stop()
        self.dispatcher.stop()
        self.services.engine.dispose()


@pytest.fixture
def service(database_url, daemon, fake):
    made = []

    def build(**kwargs):
        made.append(Service(database_url, daemon, fake, **kwargs))
        return made[-1]

    yield build
    for one in made:
        one.close()


def _provider_requests(services, provider, outcome) -> float:
    value = services.metrics.registry.get_sample_value("ews_sms_provider_requests_total",
                                                       {"provider": provider, "outcome": outcome})
    return value or 0.0


def test_twilio_answering_500_fails_over_to_the_modem_and_back(fake, service):
    fake.outage = 500  # creates and lookups alike
    s = service()
    first = s.event("raised", "siaga", 2.6, 0)
    assert {r.provider for r in first} == {"gammu"}
    # Not before Twilio had refused for EWS_SMS_FAILOVER_S (a lower bound: a slow machine only adds to it).
    assert all((r.sent_at - r.created_at).total_seconds() >= 1.0 for r in first)
    assert {r.provider for r in s.event("escalated", "awas", 3.2, 20)} == {"gammu"}  # new ones too
    assert [p["state"] for p in s.router.status()] == ["down", "up"]
    fake.outage = None
    s.event("reminded", "awas", 3.3, 80)  # its first message probes Twilio (at most one probe a second)
    back = s.event("cleared", "normal", 1.5, 200)
    assert {r.provider for r in back} == {"twilio"} and all(r.provider_sid.startswith("SM") for r in back)
    assert s.received() and set(s.received().values()) == {1}  # nobody got any message twice
    assert len(s.received()) == 4 * len(PHONES)
    assert _provider_requests(s.services, "twilio", "unknown") > 0 and _provider_requests(s.services, "gammu",
                                                                                         "accepted") >= 6


def test_twilio_not_listening_fails_over_to_the_modem_and_back(fake, service):
    fake.stop()  # connection refused: nothing reached Twilio
    s = service()
    assert {r.provider for r in s.event("raised", "siaga", 2.6, 0)} == {"gammu"}
    assert {r.provider for r in s.event("escalated", "awas", 3.2, 20)} == {"gammu"}
    assert s.router.status()[0]["state"] == "down" and "connect" in s.router.status()[0]["error"]
    fake.start()  # listening again, on the same port
    s.event("reminded", "awas", 3.3, 80)
    assert {r.provider for r in s.event("cleared", "normal", 1.5, 200)} == {"twilio"}
    assert set(s.received().values()) == {1} and len(s.received()) == 4 * len(PHONES)
    assert _provider_requests(s.services, "twilio", "refused") > 0


def test_a_message_of_unknown_outcome_waits_for_reconciliation_instead_of_the_modem(fake, service):
    fake.script.extend([("delay", 2.5)] + [("status", 500)] * 1000)  # the first answer comes after the timeout
    s = service(twilio_timeout=1.0)
    event_id = s.alert.event("raised", "awas", 3.3, 0.6)
    s.dispatcher.wake()
    wait_until(lambda: fake.creates(), 30, "the first request to Twilio")
    fake.outage = 500  # from now Twilio cannot even be asked (the delayed message is created nonetheless)
    unknown = wait_until(lambda: [r for r in rows(s.services, event_id=event_id) if r.status == "unknown"
                                  and r.error_code is None], 30, "the timed-out message to be unknown")
    (waiting,) = unknown
    wait_until(lambda: len([r for r in rows(s.services, event_id=event_id) if r.status == "sent"]) == 2, 60,
               "the two refused messages to go out through the modem")
    settle(3)  # Twilio has been down far longer than EWS_SMS_FAILOVER_S: the unknown one still waits
    (still,) = rows(s.services, id=waiting.id)
    assert still.status == "unknown" and still.provider == "twilio"
    assert waiting.phone not in {number for number, _ in (s.daemon.message("sent", f) for f in s.daemon.files("sent"))}
    assert not [f for f in s.daemon.files("outbox") if f"_{waiting.id:012d}_" in f]
    fake.outage = None
    with fake._lock:
        fake.script.clear()
    (settled,) = wait_until(lambda: [r for r in rows(s.services, id=waiting.id) if r.status == "sent"], 60,
                            "the unknown message to be reconciled")
    assert settled.provider == "twilio" and settled.provider_sid == fake.accepted()[0]["sid"]
    assert set(s.received().values()) == {1} and len(s.received()) == len(PHONES)


def test_readyz_names_a_down_provider_and_is_unready_only_when_all_are_down(fake, service, daemon):
    from service.http import create_app

    fake.stop()
    s = service()
    client = create_app(dataclasses.replace(s.services, health=Health(mqtt_connected=lambda: True, sms=s.router))
                        ).test_client()
    s.event("raised", "siaga", 2.6, 0)
    ready = client.get("/readyz")
    body = ready.get_json()
    assert ready.status_code == 200 and body["checks"]["sms"][0]["state"] == "down"
    assert "twilio" in body["warnings"][0] and "gammu" not in body["warnings"][0]
    (daemon.spool / "outbox").rename(daemon.spool / "outbox-away")  # the modem's spool is gone too
    assert client.get("/readyz").status_code == 200  # noticed now: failing, not yet down
    time.sleep(1.1)  # EWS_SMS_FAILOVER_S = 1: the Gammu problem has lasted long enough to count as down
    unready = client.get("/readyz")
    assert unready.status_code == 503
    assert "every SMS provider is down" in unready.get_json()["detail"] and "outbox" in unready.get_json()["detail"]
    (daemon.spool / "outbox-away").rename(daemon.spool / "outbox")
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'ews_sms_provider_up{provider="twilio"} 0.0' in metrics and 'ews_sms_provider_up{provider="gammu"} 1.0' in metrics
    assert 'ews_notifications_by_provider{provider="gammu",status="sent"} 3.0' in metrics
