"""Gammu drill: SIGKILL ``ews run`` again and again while it writes outbox files for a real gammu-smsd.

No half file may ever be in the outbox under a name the daemon reads (the daemon would send a
truncated message or move it to error/), and no notification may get a second file.
"""

from __future__ import annotations

import collections
import json
import uuid
from datetime import datetime, timezone

import pytest

from service.bench.common import add_subscribers
from service.dispatch import gammu_files
from tests.drills.helpers import StreamPublisher, iso, wait_until
from tests.support.gammu import GAMMU_SMSD, SKIP_REASON, GammuDaemon
from tests.support.infra import MOSQUITTO, private_mosquitto
from tests.support.service_process import ServiceProcess, sqlite_count
from tests.support.services import make_services

pytestmark = [pytest.mark.drill, pytest.mark.slow,
              pytest.mark.skipif(MOSQUITTO is None, reason="drill needs the mosquitto binary (apt-get install mosquitto)"),
              pytest.mark.skipif(GAMMU_SMSD is None, reason=SKIP_REASON)]

STATION = "PKR-LASKAP"
AREA = {"kecamatan": "Malili", "desa": "Laskap"}
COUNT = 300


def _spooled_files(daemon: GammuDaemon) -> list[tuple[str, str]]:
    """(folder, name) of every message file the daemon can see (not the hidden temporary ones)."""
    return [(folder, name) for folder in ("outbox", "sent", "error") for name in daemon.files(folder)
            if not name.startswith(gammu_files.TEMP_PREFIX)]


def _whole(daemon: GammuDaemon, bodies: dict[str, str]) -> list[str]:
    """The visible files whose content is not exactly the message of their number (a half file)."""
    broken = []
    for folder, name in _spooled_files(daemon):
        try:
            number, text = daemon.message(folder, name)
        except FileNotFoundError:
            continue  # the daemon moved it from outbox/ to sent/ while we looked
        if number not in bodies or bodies[number] != text:
            broken.append(f"{folder}/{name}")
    return broken


def test_sigkill_while_writing_outbox_files_leaves_no_half_file_and_no_duplicate(tmp_path, figure):
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    seeded = make_services(database_url)
    phones = add_subscribers(seeded.engine, [AREA], per_area=COUNT)
    seeded.engine.dispose()
    prefix = f"drill/{uuid.uuid4().hex[:8]}"
    with private_mosquitto() as broker, GammuDaemon(tmp_path / "gammu") as daemon:
        env = {"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_SPOOL": str(daemon.spool), "EWS_GAMMU_OUTBOX_MAX": "10000",
               "EWS_SMS_MAX_PER_SECOND": "60"}
        service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker.url, prefix=prefix,
                                 env=env)
        kills, temporaries = [], 0
        service.start()
        try:
            publisher = StreamPublisher(broker.url)
            body = {"ts": iso(datetime.now(timezone.utc).replace(microsecond=0)), "values": {"water_level": 3.4}}
            publisher.stream([(f"{prefix}/stations/{STATION}/readings", json.dumps(body).encode())], rate=1)
            publisher.wait_all(30)
            publisher.close()
            for target in (60, 150, 230):
                wait_until(lambda: len(_spooled_files(daemon)) >= target, 120, f"{target} outbox files")
                service.kill()
                kills.append(len(_spooled_files(daemon)))
                temporaries += len([n for n in daemon.files("outbox") if n.startswith(gammu_files.TEMP_PREFIX)])
                bodies = {row[0]: row[1] for row in _rows(database_url)}
                assert _whole(daemon, bodies) == [], "a visible outbox file is not a whole message"
                service.start()
            wait_until(lambda: sqlite_count(database_url, "SELECT COUNT(*) FROM notifications WHERE status IN "
                                                          "('pending', 'sending', 'unknown')") == 0, 180,
                       "every notification spooled or sent")
        finally:
            service.stop()
        daemon.stop()
        rows = _rows(database_url)
        files = _spooled_files(daemon)
    per_notification = collections.Counter(gammu_files.notification_id(name) for _, name in files)
    per_phone = collections.Counter(daemon.message(folder, name)[0] for folder, name in files)
    transmitted = collections.Counter(name for name, _ in daemon.transmitted())
    figure("files visible when killed", kills)
    figure("temporary files left by the kills", temporaries)
    figure("sent by the dummy phone during the drill", len(transmitted))
    figure.summary(f"{len(kills)} SIGKILLs while writing {COUNT} outbox files: {len(per_notification)} files, "
                   f"{sum(n - 1 for n in per_phone.values())} duplicates, {len(daemon.files('error'))} in error/")
    assert len(rows) == COUNT and set(per_phone) == set(phones)
    assert set(per_notification.values()) == {1} and set(per_phone.values()) == {1}
    assert daemon.files("error") == [] and set(transmitted.values()) <= {1}
    assert _whole(daemon, {row[0]: row[1] for row in rows}) == []


def _rows(database_url: str) -> list[tuple[str, str]]:
    import sqlite3

    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT phone, body FROM notifications").fetchall()
