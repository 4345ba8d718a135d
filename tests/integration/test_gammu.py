"""The Gammu provider against a real gammu-smsd (Debian's package) on the dummy phone driver, on a real database.

Each test starts its own daemon in a temporary folder (tests/support/gammu.py) and drives the
dispatcher and the spool reader in-process.
"""

from __future__ import annotations

import collections
import socket
import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from alerts import priority
from service import subscribers
from service.db import schema
from service.bootstrap import sms_dispatcher, spool_reader
from service.dispatch import make_provider, outbox
from service.dispatch import gammu_files
from tests.integration.test_dispatch import LASKAP, Alerts, add, rows
from tests.support.gammu import GAMMU_SMSD, SKIP_REASON, GammuDaemon, settle
from tests.support.infra import wait_until
from tests.support.services import make_services

pytestmark = pytest.mark.skipif(GAMMU_SMSD is None, reason=SKIP_REASON)

n = schema.notifications


@pytest.fixture
def daemon(tmp_path):
    gammu = GammuDaemon(tmp_path / "gammu")
    yield gammu
    gammu.stop()


class Gammu:
    """The service side of one instance: services, router, dispatcher and spool reader on the daemon's spool."""

    def __init__(self, database_url, daemon, instance="gammu-test-1", **env):
        env = {"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_SPOOL": str(daemon.spool), "EWS_SMS_MAX_PER_SECOND": "100", **env}
        self.services = make_services(database_url, instance_id=instance, **env)
        self.router = make_provider(self.services.settings, self.services.metrics, self.services.engine, instance)
        self.dispatcher = sms_dispatcher(self.services, self.router, backoff_base=0.05, backoff_max=0.5,
                                     reconcile_after=0.05)
        self.reader = spool_reader(self.services, self.router.provider("gammu"), settle_s=0.3)
        (daemon.spool / "inbox" / "handled").mkdir(exist_ok=True)

    def pump(self) -> None:
        """One dispatcher pass and one spool pass."""
        self.dispatcher.run_once()
        self.reader.run_once()

    def until(self, condition, what: str, timeout: float = 60.0):
        return wait_until(lambda: self.pump() or condition(), timeout, what)

    def close(self) -> None:
        self.dispatcher.stop()
        self.services.engine.dispose()


@pytest.fixture
def gammu(database_url, daemon):
    made = []

    def build(daemon=daemon, **kwargs):
        instance = Gammu(database_url, daemon, **kwargs)
        made.append(instance)
        return instance

    yield build
    for instance in made:
        instance.close()


def test_an_awas_warning_reaches_the_dummy_phone(daemon, gammu):
    daemon.start()
    g = gammu()
    add(g.services, "0812-1111-0001")
    Alerts(g.services).event("raised", "awas", 3.3, 0.6)
    (row,) = g.until(lambda: [r for r in rows(g.services) if r.status == "sent"], "the warning to be sent")
    name = row.provider_sid
    assert row.provider == "gammu" and row.kind == "warning" and row.priority == 0
    assert name.startswith("OUTA") and gammu_files.notification_id(name) == row.id
    assert (name, "+6281211110001") in daemon.transmitted()  # the daemon's own log: sent on the dummy phone
    number, text = daemon.message("sent", name)
    assert number == "+6281211110001" and text == row.body and text.startswith("BPBD LUTIM: AWAS")
    assert row.sent_at is not None and row.sent_at >= row.created_at
    assert daemon.files("outbox") == [] and daemon.files("error") == []


def test_the_daemon_sends_in_the_priority_order_of_section_10(daemon, gammu):
    g = gammu(EWS_GAMMU_OUTBOX_MAX="50")
    add(g.services, "0812-1111-0009", role="staff", areas=[{"kecamatan": "Nuha"}])  # staff get everything
    # Created least urgent first, so that creation order and priority order disagree.
    Alerts(g.services, station="MLL-MALILI", exercise=True).event("raised", "awas", 4.2, 0.5)
    Alerts(g.services, kind="offline").event("raised", "waspada")
    with g.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.broadcasts).values(
            created_at=datetime.now(timezone.utc), created_by="test", body="Kerja bakti besok", areas=[{"kecamatan": "Nuha"}],
            roles=["staff"], dispatch="pending"))
    reminded = Alerts(g.services, station="LRN-PARUMPANAI")
    reminded.event("reminded", "awas", 3.4, 0.1)
    Alerts(g.services, station="KLN-WOTU").event("raised", "waspada", 1.9, 0.2)
    Alerts(g.services, station="KLN-KALAENA").event("raised", "siaga", 2.6, 0.3)
    Alerts(g.services).event("raised", "awas", 3.3, 0.6)
    g.dispatcher.run_until_idle()
    spooled = rows(g.services)
    assert [r.status for r in spooled] == ["spooled"] * 7
    daemon.start()  # the daemon finds all seven waiting and picks them by name
    g.until(lambda: all(r.status == "sent" for r in rows(g.services)), "all seven sent", timeout=90)
    order = [gammu_files.notification_id(name) for name, _ in daemon.transmitted()]
    by_id = {r.id: r for r in spooled}
    assert [(by_id[i].kind, by_id[i].priority) for i in order] == [
        ("warning", 0), ("warning", 1), ("warning", 2), ("reminder", 3), ("broadcast", 5), ("operational", 6),
        ("warning", priority.EXERCISE_RANK)]


def test_keywords_sent_to_the_modem_are_handled_and_answered_through_it(daemon, gammu):
    daemon.start()
    g = gammu()
    resident = add(g.services, "0812-1111-0001")
    with g.services.engine.begin() as conn:  # the river at Laskap is at SIAGA now
        conn.execute(sa.delete(schema.station_state).where(schema.station_state.c.station_id == "PKR-LASKAP"))
        conn.execute(sa.insert(schema.station_state).values(station_id="PKR-LASKAP", level="siaga", latest={},
                                                            updated_at=datetime.now(timezone.utc)))
    daemon.receive("+6281211110001", "berhenti")
    daemon.receive("+6281299990001", "DAFTAR Laskap")
    daemon.receive("+6281211110001", "INFO")

    def replies():
        return [r for r in rows(g.services, kind="reply") if r.status == "sent"]

    sent = g.until(lambda: len(replies()) == 3 and replies(), "three replies sent through the modem")
    with g.services.engine.connect() as conn:
        assert subscribers.get(conn, resident).opted_out is True
        newcomer = subscribers.by_phone(conn, "+6281299990001")
        handled = conn.execute(sa.select(schema.inbound_messages).order_by(schema.inbound_messages.c.id)).fetchall()
    assert newcomer is not None and newcomer.areas == [{"kecamatan": "Malili", "desa": "Laskap"}] and newcomer.source == "sms"
    assert sorted(m.keyword for m in handled) == ["BERHENTI", "DAFTAR", "INFO"]
    to = {r.phone: [] for r in sent}
    for r in sent:
        to[r.phone].append(r.body)
        assert r.provider == "gammu" and (r.provider_sid, r.phone) in daemon.transmitted()
    assert any("SIAGA" in body for body in to["+6281211110001"])  # INFO answers with the current level
    assert len(to["+6281299990001"]) == 1 and "Laskap" in to["+6281299990001"][0]
    assert len(daemon.files("inbox/handled")) == 3 and daemon.files("inbox") == []


def test_a_message_the_daemon_moves_to_error_is_failed_and_never_retried(tmp_path, gammu):
    """The dummy phone never fails a send, and Gammu 1.42 spins on an unreadable outbox file (SMSD_SendSMS loops
    over an uninitialised message count), so this daemon is made to fail the other way it does for real: its
    sentsmspath vanishes after it started (an unmounted disk), it cannot file the message there, and moves it
    to error/."""
    (tmp_path / "daemon-sent").mkdir()
    daemon = GammuDaemon(tmp_path / "failing", sent_path=tmp_path / "daemon-sent")
    try:
        g = gammu(daemon=daemon)
        add(g.services, "0812-1111-0001")
        daemon.start()
        (tmp_path / "daemon-sent").rmdir()
        Alerts(g.services).event("raised", "awas", 3.3, 0.6)
        (row,) = g.until(lambda: [r for r in rows(g.services) if r.status == "failed"], "the message to fail")
        assert (row.error_code, row.sent_at, row.attempts, row.provider) == ("gammu_error", None, 1, "gammu")
        assert daemon.files("error") == [row.provider_sid] and "Error moving message" in daemon.log_text()
        for _ in range(5):
            g.pump()
        settle(3)  # the daemon loops every second: a retried message would be in the outbox by now
        g.pump()
        assert [(r.status, r.attempts) for r in rows(g.services)] == [("failed", 1)]
        assert daemon.files("outbox") == [] and daemon.files("error") == [row.provider_sid]
    finally:
        daemon.stop()


def test_a_restart_finds_the_file_its_predecessor_wrote_and_writes_no_second(daemon, gammu):
    g = gammu()
    add(g.services, "0812-1111-0001")
    add(g.services, "0812-1111-0002")
    Alerts(g.services).event("raised", "awas", 3.3, 0.6)
    g.dispatcher.expand()
    # A process that claimed both rows, wrote the first one's file and died before recording anything.
    claimed = outbox.claim(g.services.engine, f"{socket.gethostname()}-999999", 10, datetime.now(timezone.utc))
    g.router.provider("gammu").send(claimed[0].phone, claimed[0].body, None, notification=claimed[0])
    assert len(daemon.files("outbox")) == 1
    later = gammu(instance="gammu-test-2")
    later.dispatcher.recover(on_start=True)
    later.until(lambda: all(r.status == "spooled" for r in rows(later.services)), "both rows spooled")
    assert len(daemon.files("outbox")) == 2
    assert sorted(gammu_files.notification_id(name) for name in daemon.files("outbox")) == [r.id for r in claimed]
    daemon.start()
    later.until(lambda: all(r.status == "sent" for r in rows(later.services)), "both sent")
    assert collections.Counter(number for _, number in daemon.transmitted()) == {"+6281211110001": 1,
                                                                                "+6281211110002": 1}


def test_two_instances_on_one_spool_write_each_message_once(daemon, gammu):
    daemon.start()
    slow = {"EWS_GAMMU_OUTBOX_MAX": "100", "EWS_SMS_MAX_PER_SECOND": "5"}  # four senders each: both take a share
    a, b = gammu(**slow), gammu(instance="gammu-test-2", **slow)
    phones = [f"+62812130{i:05d}" for i in range(30)]
    for phone in phones:
        add(a.services, phone)
    for instance in (a, b):
        instance.dispatcher.start()
        instance.reader.start()
    Alerts(a.services).event("raised", "awas", 3.3, 0.6)
    try:
        wait_until(lambda: len([r for r in rows(a.services) if r.status == "sent"]) == 30, 120, "30 messages sent")
    finally:
        for instance in (a, b):
            instance.reader.stop()
            instance.dispatcher.stop()
    assert collections.Counter(number for _, number in daemon.transmitted()) == {p: 1 for p in phones}
    assert {r.claimed_by for r in rows(a.services)} == {"gammu-test-1", "gammu-test-2"}


def test_a_received_message_is_handled_once_by_two_readers(daemon, gammu):
    daemon.start()
    a, b = gammu(), gammu(instance="gammu-test-2")
    add(a.services, "0812-1111-0001")
    daemon.receive("+6281211110001", "INFO")
    wait_until(lambda: daemon.files("inbox"), 30, "the daemon to store the SMS in inbox/")
    settle(0.5)
    threads = [threading.Thread(target=reader.receive) for reader in (a.reader, b.reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with a.services.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.inbound_messages)).scalar_one() == 1
    assert len(rows(a.services, kind="reply")) == 1
    assert daemon.files("inbox") == [] and len(daemon.files("inbox/handled")) == 1


def test_the_reply_to_an_auto_responder_stops_after_five_an_hour(daemon, gammu):
    daemon.start()
    g = gammu()
    for _ in range(7):
        daemon.receive("+6281211119999", "apa?")
    g.until(lambda: len(daemon.files("inbox/handled")) == 7, "seven messages handled")
    assert len(rows(g.services, kind="reply")) == 5


def test_the_sample_smsdrc_runs_with_the_service(tmp_path, database_url):
    """config/gammu-smsdrc as shipped, with the dummy phone instead of the modem and the spool in a temporary folder."""
    from pathlib import Path

    sample = (Path(__file__).resolve().parents[2] / "config" / "gammu-smsdrc").read_text()
    folder = tmp_path / "sample"
    text = (sample.replace("device = /dev/ttyUSB0\nconnection = at", f"model = dummy\nconnection = none\ndevice = {folder}/phone")
            .replace("/var/spool/gammu", str(folder / "spool")).replace("/var/log/gammu-smsd.log", str(folder / "smsd.log")))
    assert "model = dummy" in text and "/var/" not in text
    daemon = GammuDaemon(folder, smsdrc=text)
    g = Gammu(database_url, daemon)
    try:
        add(g.services, "0812-1111-0001")
        daemon.start()
        Alerts(g.services).event("raised", "awas", 3.3, 0.6)
        (row,) = g.until(lambda: [r for r in rows(g.services) if r.status == "sent"], "the warning to be sent")
        assert (row.provider_sid, "+6281211110001") in daemon.transmitted()
        daemon.receive("+6281211110001", "INFO")
        g.until(lambda: [r for r in rows(g.services, kind="reply") if r.status == "sent"], "the INFO reply", timeout=90)
    finally:
        g.close()
        daemon.stop()
