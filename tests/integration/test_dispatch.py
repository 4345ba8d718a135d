"""SMS dispatch on a real database with the real ``twilio`` library against the fake Twilio server."""

from __future__ import annotations

import collections
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts import gsm7
from service import subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher
from service.dispatch import ConsoleProvider, Dispatcher, RateLimiter, make_provider
from service.dispatch import outbox
from sinks.twilio import FakeTwilio
from tests.support.services import make_services

LASKAP = [{"kecamatan": "Malili", "desa": "Laskap"}]
n = schema.notifications


@pytest.fixture
def fake():
    with FakeTwilio() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch):
    # An edge/region in the environment would rewrite 127.0.0.1 (tech-notes 4.3).
    monkeypatch.delenv("TWILIO_EDGE", raising=False)
    monkeypatch.delenv("TWILIO_REGION", raising=False)


_made: list = []


@pytest.fixture(autouse=True)
def _stop_dispatchers():
    yield
    while _made:
        _made.pop().stop()


def made(d: Dispatcher) -> Dispatcher:
    """Stop ``d`` (its threads and HTTP sessions) when the test ends."""
    _made.append(d)
    return d


def twilio_services(database_url, fake, rate="50", **env):
    return make_services(database_url, **fake.env(), EWS_SMS_MAX_PER_SECOND=rate, **env)


def dispatcher(services, **kwargs):
    kwargs.setdefault("backoff_base", 0.05)
    kwargs.setdefault("reconcile_after", 0.05)
    return made(sms_dispatcher(services, make_provider(services.settings, services.metrics), **kwargs))


def add(services, phone, areas=LASKAP, role="resident", language="id", opted_out=False):
    now = datetime.now(timezone.utc)
    with services.engine.begin() as conn:
        row = subscribers.create(conn, {"phone": phone, "areas": areas, "role": role, "language": language}, now)
        if opted_out:
            subscribers.set_opted_out(conn, row.id, True, now)
    return row.id


LEVELS = ["normal", "waspada", "siaga", "awas"]


class Alerts:
    """Writes alerts and events the way the rules engine does (dispatch='pending' when people are told)."""

    def __init__(self, services, station="PKR-LASKAP", kind="water_level", exercise=False):
        self.services, self.station, self.kind = services, station, kind
        now = datetime.now(timezone.utc)
        with services.engine.begin() as conn:
            self.id = conn.execute(sa.insert(schema.alerts).values(
                station_id=station, kind=kind, level="normal", peak_level="normal", state="active", opened_at=now,
                exercise=exercise).returning(schema.alerts.c.id)).scalar_one()

    def event(self, type_, level, value=None, rate=None, dispatch="pending", minutes=0):
        at = datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc) + timedelta(minutes=minutes)
        reading = None
        if value is not None:
            reading = {"metric": self.kind, "value": value, "ts": at.isoformat()}
            if rate is not None:
                reading["rate_per_hour"] = rate
        with self.services.engine.begin() as conn:
            if type_ in ("raised", "escalated"):  # the episode's peak, as the engine keeps it (an all-clear needs it)
                peak = conn.execute(sa.select(schema.alerts.c.peak_level).where(schema.alerts.c.id == self.id)).scalar_one()
                conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == self.id).values(
                    peak_level=max(peak, level, key=LEVELS.index)))
            return conn.execute(sa.insert(schema.alert_events).values(
                alert_id=self.id, type=type_, level=level, at=at, recorded_at=at, reading=reading, dispatch=dispatch,
            ).returning(schema.alert_events.c.id)).scalar_one()


def rows(services, **where):
    with services.engine.connect() as conn:
        query = sa.select(n).order_by(n.c.id)
        for key, value in where.items():
            query = query.where(n.c[key] == value)
        return conn.execute(query).fetchall()


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most requests that fell in any half-open window of ``window`` seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_a_replay_warns_each_subscriber_of_the_area_once_per_escalation(database_url, fake):
    services = twilio_services(database_url, fake)
    laskap = add(services, "0812-1111-0001")
    malili_en = add(services, "+62 812 1111 0002", areas=[{"kecamatan": "malili", "desa": None}], language="en")
    wotu = add(services, "6281211110003", areas=[{"kecamatan": "Wotu", "desa": "Kalaena"}])
    opted_out = add(services, "0812 1111 0004", opted_out=True)
    staff = add(services, "081211110005", areas=[{"kecamatan": "Wotu"}], role="staff")
    alert = Alerts(services)
    alert.event("raised", "waspada", 1.85, 0.3)
    alert.event("escalated", "siaga", 2.45, 0.42, minutes=20)
    alert.event("escalated", "awas", 3.2, 0.4, minutes=40)
    alert.event("reminded", "awas", 3.4, 0.1, minutes=100)
    alert.event("deescalated", "siaga", 2.6, -0.3, dispatch="none", minutes=160)
    alert.event("cleared", "normal", 1.5, -0.2, minutes=200)
    d = dispatcher(services)
    assert d.run_until_idle() == {}
    assert d.run_once()["sent_attempts"] == 0  # nothing twice

    by_subscriber = collections.defaultdict(list)
    for row in rows(services):
        by_subscriber[row.subscriber_id].append(row)
    assert set(by_subscriber) == {laskap, malili_en, staff}
    for person in (laskap, malili_en, staff):
        assert [r.kind for r in by_subscriber[person]] == ["warning"] * 3 + ["reminder", "all_clear"]
        assert all(r.status == "sent" and r.provider_sid.startswith("SM") for r in by_subscriber[person])
    texts = [r.body for r in by_subscriber[laskap]]
    assert texts[0].startswith("BPBD LUTIM: WASPADA banjir. TMA S.Pongkeru Laskap 1.85 m (naik 30cm/jam) 14:05 WITA")
    assert "AWAS" in texts[2] and "evakuasi" in texts[2] and "MASIH AWAS" in texts[3] and "NORMAL" in texts[4]
    assert all("112" in t and gsm7.is_gsm7(t) and len(t) <= 160 for t in texts)
    assert "AWAS (danger)" in by_subscriber[malili_en][2].body
    # The provider got exactly one request per notification, each to the right number.
    sent = collections.Counter(m["to"] for m in fake.accepted())
    assert sent == {"+6281211110001": 5, "+6281211110002": 5, "+6281211110005": 5}
    assert len(fake.creates()) == 15


def test_expanding_an_event_again_creates_nothing_new(database_url):
    services = make_services(database_url)
    add(services, "0812-1111-0001")
    event = Alerts(services).event("raised", "siaga", 2.5, 0.5)
    d = made(sms_dispatcher(services, ConsoleProvider(stream=open(os.devnull, "w"))))
    assert d.expand() == 2 - 1  # one resident, no staff
    with services.engine.begin() as conn:  # as if the process died before dispatch='done' was committed
        conn.execute(sa.update(schema.alert_events).where(schema.alert_events.c.id == event).values(dispatch="pending"))
    assert d.expand() == 0
    assert len(rows(services)) == 1


def test_operational_and_exercise_alerts_reach_staff_only(database_url):
    services = make_services(database_url)
    add(services, "0812-1111-0001")
    staff = add(services, "0812-1111-0009", role="staff", areas=[{"kecamatan": "Nuha"}])
    Alerts(services, kind="offline").event("raised", "waspada")
    Alerts(services, station="MLL-MALILI", exercise=True).event("raised", "awas", 4.2, 0.5)
    console = ConsoleProvider(stream=open(os.devnull, "w"))
    made(sms_dispatcher(services, console)).run_until_idle()
    got = rows(services)
    assert {r.subscriber_id for r in got} == {staff} and len(got) == 2
    assert "OFFLINE" in got[0].body and got[1].body.startswith("LATIHAN BPBD LUTIM: AWAS")
    assert len(console.sent) == 2


def test_outage_then_throttling_then_recovery_delivers_everything_once_within_the_rate(database_url, fake):
    rate = 10
    services = twilio_services(database_url, fake, rate=str(rate))
    phones = [f"+628121200{i:04d}" for i in range(24)]
    for phone in phones:
        add(services, phone)
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    fake.latency = (0.01, 0.05)
    fake.script.extend([("status", 500)] * 6 + [("429", 1)] * 3 + [("status", 503)] * 2)
    d = dispatcher(services)
    assert d.run_until_idle(timeout=120) == {}

    assert all(r.status == "sent" for r in rows(services))
    assert sorted(m["to"] for m in fake.accepted()) == phones  # every one, none twice
    # The limiter spaces request starts 1/rate apart; 30 ms of slack for arrival jitter on a busy machine.
    times = [r.at for r in fake.requests]
    assert max_in_window([t for t in times], window=1.0 - 0.03) <= rate
    # After the 429 with Retry-After: 1, nothing was sent for a second.
    throttled = [r.at for r in fake.creates()][6:9]
    later = [r.at for r in fake.requests if r.at > throttled[-1]]
    assert later and later[0] - throttled[-1] >= 0.9


def test_a_dropped_answer_after_acceptance_is_reconciled_not_resent(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    fake.script.append("drop_after_accept")
    d = dispatcher(services)
    assert d.run_until_idle() == {}
    (row,) = rows(services)
    assert row.status == "sent" and row.provider_sid == fake.accepted()[0]["sid"]
    assert len(fake.accepted()) == 1 and len(fake.creates()) == 1


def test_a_drop_before_acceptance_is_sent_again_after_reconciliation(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    fake.script.append("drop_before_accept")
    dispatcher(services).run_until_idle()
    (row,) = rows(services)
    assert row.status == "sent" and row.attempts == 2
    assert len(fake.accepted()) == 1 and len(fake.creates()) == 2


@pytest.mark.parametrize("code", [21211, 21610, 21614])
def test_permanent_errors_fail_without_retry(database_url, fake, code):
    services = twilio_services(database_url, fake)
    who = add(services, "0812-1111-0001")
    add(services, "0812-1111-0002")
    fake.fail_numbers["+6281211110001"] = code
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    dispatcher(services).run_until_idle()
    failed, ok = rows(services)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", str(code), 1)
    assert ok.status == "sent"
    assert len([r for r in fake.creates() if r.form["To"] == "+6281211110001"]) == 1
    with services.engine.connect() as conn:
        assert subscribers.get(conn, who).opted_out is (code == 21610)


def test_rows_left_sending_by_a_dead_process_are_reconciled_before_any_resend(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    add(services, "0812-1111-0002")
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    d = dispatcher(services)
    d.expand()
    # A process that claimed both rows, got the first one accepted and died before recording anything.
    claimed = outbox.claim(services.engine, "some-host-12345", 10, datetime.now(timezone.utc))
    assert len(claimed) == 2
    d.provider.send(claimed[0].phone, claimed[0].body, None)
    later = dispatcher(services, stale_after=0)
    later.start()
    try:
        deadline = time.monotonic() + 60
        while any(r.status != "sent" for r in rows(services)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        later.stop()
    assert [r.status for r in rows(services)] == ["sent", "sent"]
    assert sorted(m["to"] for m in fake.accepted()) == ["+6281211110001", "+6281211110002"]


def test_the_console_provider_resends_what_it_cannot_look_up(database_url):
    services = make_services(database_url)
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    console = ConsoleProvider(stream=open(os.devnull, "w"))
    d = made(sms_dispatcher(services, console, stale_after=0, backoff_base=0.01))
    d.expand()
    outbox.claim(services.engine, "gone-1", 10, datetime.now(timezone.utc))
    d.recover()
    d.run_until_idle()
    assert [r.status for r in rows(services)] == ["sent"] and len(console.sent) == 1


def test_the_background_dispatcher_sends_after_a_wake_and_stops_cleanly(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    fake.latency = 0.05
    d = dispatcher(services, poll_interval=5)
    d.start()
    try:
        Alerts(services).event("raised", "siaga", 2.5, 0.5)
        d.wake()
        deadline = time.monotonic() + 30
        while not fake.accepted() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        d.stop()
    assert len(fake.accepted()) == 1
    assert rows(services)[0].status == "sent"


def test_status_callbacks_only_move_forward(database_url, fake):
    services = twilio_services(database_url, fake)
    add(services, "0812-1111-0001")
    Alerts(services).event("raised", "awas", 3.3, 0.6)
    dispatcher(services).run_until_idle()
    (row,) = rows(services)
    now = datetime.now(timezone.utc)
    apply = lambda status, code=None: outbox.apply_status(services.engine, now, notification_id=row.id,  # noqa: E731
                                                          sid=row.provider_sid, provider_status=status, error_code=code)
    assert apply("delivered") == "delivered"
    assert apply("sent") == "delivered"
    assert apply("delivered") == "delivered"
    assert apply("undelivered", "30003") == "delivered"
    assert outbox.apply_status(services.engine, now, notification_id=None, sid="SMnope", provider_status="sent") is None


def test_broadcasts_reach_the_areas_and_roles_asked_for(database_url):
    services = make_services(database_url)
    laskap = add(services, "0812-1111-0001")
    add(services, "0812-1111-0002", areas=[{"kecamatan": "Wotu"}])
    add(services, "0812-1111-0003", opted_out=True)
    staff_malili = add(services, "0812-1111-0004", role="staff", areas=[{"kecamatan": "Malili"}])
    add(services, "0812-1111-0005", role="staff", areas=[{"kecamatan": "Nuha"}])
    with services.engine.begin() as conn:
        conn.execute(sa.insert(schema.broadcasts).values(
            created_at=datetime.now(timezone.utc), created_by="op#1", body="Latihan evakuasi Sabtu 08:00 di balai desa \u2013 hadir ya\u2026",
            areas=[{"kecamatan": "Malili", "desa": "Laskap"}], roles=["resident", "staff"]))
    console = ConsoleProvider(stream=open(os.devnull, "w"))
    made(sms_dispatcher(services, console)).run_until_idle()
    got = rows(services)
    assert {r.subscriber_id for r in got} == {laskap, staff_malili}
    assert got[0].body == "BPBD LUTIM: Latihan evakuasi Sabtu 08:00 di balai desa - hadir ya..."


def test_the_rate_limiter_spaces_slots_across_threads_and_after_a_pause():
    clock = [100.0]
    limiter = RateLimiter(20, clock=lambda: clock[0])
    slots, lock = [], threading.Lock()

    def worker():
        for _ in range(25):
            with lock:
                slots.append(clock[0] + limiter.reserve())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    assert len(set(slots)) == 200
    assert all(b - a == pytest.approx(0.05) for a, b in zip(slots, slots[1:]))
    clock[0] = slots[-1]
    limiter.pause_until(clock[0] + 3)
    assert limiter.paused() and clock[0] + limiter.reserve() == pytest.approx(slots[-1] + 3)


def test_a_real_limiter_lets_no_more_than_its_rate_through_in_any_second():
    limiter = RateLimiter(50)
    grants, lock = [], threading.Lock()

    def worker():
        for _ in range(15):
            slot = limiter.acquire()
            assert slot is None
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 90 and max_in_window(grants, 1.0 - 0.03) <= 50
