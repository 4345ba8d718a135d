"""``ews simulate`` sirens through a real broker against ``ews run``: ``--sirens`` answers for the
registry's sirens, ``--silent-siren`` never answers. An operator's commands go out through the
service; the answering siren's acks are recorded, the silent one gets the same command again and
then staff get the ``siren`` alert."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from service.db.schema import alerts, siren_commands
from tests.support.infra import ROOT, wait_until
from tests.support.service_process import ProcessApi, ServiceProcess

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_simulated_sirens_answer_and_a_silent_one_brings_the_siren_alert(tmp_path, broker_url, topic_prefix):
    database_url = f"sqlite:///{tmp_path / 'ews.db'}"
    service = ServiceProcess(tmp_path / "svc", database_url=database_url, mqtt_url=broker_url, prefix=topic_prefix,
                             env={"EWS_SEED": "luwu-timur", "EWS_SIREN_ACK_TIMEOUT_S": "1", "EWS_LEADER_LEASE_S": "3"})
    service.start()
    engine = sa.create_engine(database_url)
    simulate = None
    try:
        ProcessApi(service).json("PATCH", "/stations/KLN-WOTU", {"sirens": [{"id": "SRN-WOTU-1"}, {"id": "SRN-WOTU-2"}]})
        env = {**service.env}
        simulate = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "simulate", "--scenario", "calm", "--speed", "max", "--quiet",
             "--mqtt-url", broker_url, "--prefix", topic_prefix, "--stations", "ARR-MALILI",
             "--client-id-prefix", f"sim-{uuid.uuid4().hex[:6]}", "--sirens", "--silent-siren", "SRN-WOTU-2",
             "--linger", "60"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = tmp_path / "simulate.log"

        def announced() -> bool:
            return simulate.poll() is None and "SRN-WOTU-1 answer" in _read_some(simulate, log)

        wait_until(announced, 60, "the simulated sirens to subscribe")
        answered = ProcessApi(service).json("POST", "/sirens/SRN-WOTU-1/commands", {"action": "test"}, role="operator")
        unanswered = ProcessApi(service).json("POST", "/sirens/SRN-WOTU-2/commands", {"action": "on", "duration_s": 60},
                          role="operator")

        def status(command_id: str):
            with engine.connect() as conn:
                return conn.execute(sa.select(siren_commands.c.status, siren_commands.c.attempts).where(
                    siren_commands.c.command_id == command_id)).one()

        wait_until(lambda: status(answered["command_id"]).status == "acked", 30, "the simulated ack")
        wait_until(lambda: status(unanswered["command_id"]).status == "unanswered", 30, "the silent siren given up")
        assert status(unanswered["command_id"]).attempts == 4
        with engine.connect() as conn:
            opened = conn.execute(sa.select(alerts.c.station_id, alerts.c.state).where(alerts.c.kind == "siren")).all()
        assert opened == [("KLN-WOTU", "active")]
        siren = ProcessApi(service).json("GET", "/sirens/SRN-WOTU-1", role="viewer")
        assert siren["last_ack"]["command_id"] == answered["command_id"] and siren["state"] == "unknown"  # a test
        text = _read_some(simulate, log)
        assert "siren SRN-WOTU-1: TEST" in text and "SRN-WOTU-2 (silent): received on" in text
    finally:
        if simulate is not None:
            simulate.kill()
            simulate.wait(10)
        service.stop()
        engine.dispose()


def _read_some(process: subprocess.Popen, log) -> str:
    """What the simulator said on stderr so far (read without blocking, kept in ``log``)."""
    import os
    import select

    chunks = []
    while select.select([process.stderr], [], [], 0)[0]:
        data = os.read(process.stderr.fileno(), 65536)
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    with open(log, "a", encoding="utf-8") as out:
        out.write("".join(chunks))
    return log.read_text(encoding="utf-8") if log.exists() else ""
