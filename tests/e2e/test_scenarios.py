"""Every bundled scenario end to end: ``ews simulate`` → MQTT → ``ews run`` → ``GET /api/v1/alerts``.

Each scenario file carries its expected outcome (``"expect"``, documented in
docs/field.md). The service runs as a subprocess with a temporary SQLite database,
the Luwu Timur seed, console SMS and a private Mosquitto (the embedded broker when
the mosquitto binary is missing); the simulator runs as fast as it can.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alerts.levels import Level
from sensors.simulator import list_scenarios, load_scenario, load_seed_stations
from tests.support.infra import MOSQUITTO, PrivateMosquitto, free_port, wait_for_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
E2E_STALE_AFTER_S = 60  # stale_after_s for stations a scenario expects to go offline


def _service_available() -> bool:
    try:
        import service.runtime  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True




class EwsService:
    """``ews run`` as a subprocess on a temporary SQLite database, with an admin token."""

    def __init__(self, directory: Path, *, mqtt_url: str | None, prefix: str):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.db_file = directory / "ews.db"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
        self.env.update({
            "EWS_DATABASE_URL": f"sqlite:///{self.db_file}",
            "EWS_MQTT_TOPIC_PREFIX": prefix,
            "EWS_SEED": "luwu-timur",
            "EWS_HTTP_HOST": "127.0.0.1",
            "EWS_HTTP_PORT": str(self.port),
            "EWS_SMS_PROVIDER": "console",
            "EWS_MQTT_CLIENT_ID": f"ews-e2e-{uuid.uuid4().hex[:8]}",
            "EWS_LOG_LEVEL": "WARNING",
        })
        if mqtt_url:
            self.env["EWS_MQTT_URL"] = mqtt_url
            self.mqtt_url = mqtt_url
        else:
            embedded = free_port()
            self.env["EWS_EMBEDDED_MQTT_PORT"] = str(embedded)
            self.mqtt_url = f"mqtt://127.0.0.1:{embedded}"
        self.process: subprocess.Popen | None = None
        self._token: str | None = None

    def start(self) -> "EwsService":
        self.process = subprocess.Popen([sys.executable, "-m", "service.cli", "run"], env=self.env, cwd=ROOT,
                                        stdout=open(self.directory / "stdout.log", "ab"),
                                        stderr=open(self.directory / "stderr.log", "ab"))
        wait_for_port("127.0.0.1", self.port, timeout=60)
        wait_until(lambda: self._ready(), 60, "GET /readyz to answer 200")
        return self

    def _ready(self) -> bool:
        import requests

        if self.process.poll() is not None:
            raise AssertionError(f"ews run exited: {(self.directory / 'stderr.log').read_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def token(self) -> str:
        if self._token is None:
            result = subprocess.run([sys.executable, "-m", "service.cli", "token", "create", "--role", "admin",
                                     "--name", "test"], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            self._token = result.stdout.split()[0]
        return self._token

    def get_all(self, path: str, **params) -> list[dict]:
        """Every item of a paginated list."""
        import requests

        items, cursor = [], None
        while True:
            query = dict(params, limit=200, **({"cursor": cursor} if cursor else {}))
            answer = requests.get(f"http://127.0.0.1:{self.port}/api/v1{path}", params=query, timeout=30,
                                  headers={"Authorization": f"Bearer {self.token()}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            items.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                return items

    def shorten_stale_after(self, station_id: str, seconds: int) -> None:
        """Make a station count as offline after ``seconds`` of silence (GET, edit, PUT its rules)."""
        import requests

        url = f"http://127.0.0.1:{self.port}/api/v1/stations/{station_id}/rules"
        headers = {"Authorization": f"Bearer {self.token()}"}
        answer = requests.get(url, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        rules = answer.json()
        rules["stale_after_s"] = seconds
        answer = requests.put(url, json=rules, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text

    def _query(self, sql: str, *args):
        with sqlite3.connect(f"file:{self.db_file}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def count_readings(self, station_id: str | None = None) -> int:
        if station_id is None:
            return self._query("SELECT COUNT(*) FROM readings")[0][0]
        return self._query("SELECT COUNT(*) FROM readings WHERE station_id = ?", station_id)[0][0]

    def count_distinct_readings(self, station_id: str) -> int:
        return self._query("SELECT COUNT(*) FROM (SELECT DISTINCT station_id, metric, ts FROM readings"
                           " WHERE station_id = ?)", station_id)[0][0]

    def count_dead_letters(self) -> int:
        return self._query("SELECT COUNT(*) FROM dead_letters")[0][0]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# --------------------------------------------------------------------------- expectations


def _level(name: str) -> Level:
    return Level.parse(name)


def check_expectations(expect: dict, alerts: list[dict], dead_letters: list[dict], stations: list[str],
                       qualities: dict[str, list[str]] | None = None) -> list[str]:
    """The ways the alerts (and the readings' quality marks) differ from a scenario's ``expect``; empty when they match."""
    problems = []
    for kind in ("water_level", "rainfall", "upstream", "offline", "battery", "sensor"):
        rules = expect.get(kind) or {}
        for station in stations:
            rule = rules.get(station, rules.get("*"))
            if rule is None:
                continue
            mine = [a for a in alerts if a["station_id"] == station and a["kind"] == kind]
            peak = max((_level(a["peak_level"]) for a in mine), default=Level.NORMAL)
            if "peak" in rule and peak != _level(rule["peak"]):
                problems.append(f"{station} {kind}: peak {peak.label}, expected {rule['peak']}")
            if "peak_at_least" in rule and peak < _level(rule["peak_at_least"]):
                problems.append(f"{station} {kind}: peak {peak.label}, expected at least {rule['peak_at_least']}")
            if "peak_at_most" in rule and peak > _level(rule["peak_at_most"]):
                problems.append(f"{station} {kind}: peak {peak.label}, expected at most {rule['peak_at_most']}")
            if "opened" in rule and bool(mine) != rule["opened"]:
                problems.append(f"{station} {kind}: {'an' if mine else 'no'} alert, expected the opposite")
            still_open = any(a.get("state") == "active" for a in mine)
            if "open" in rule and still_open != rule["open"]:
                problems.append(f"{station} {kind}: alert {'still open' if still_open else 'closed'}, "
                                f"expected {'open' if rule['open'] else 'closed'}")
    for station in stations:
        rule = (expect.get("quality") or {}).get(station, (expect.get("quality") or {}).get("*"))
        for mark, count in (rule or {}).items():
            have = (qualities or {}).get(station, []).count(mark)
            if have != count:
                problems.append(f"{station} water levels marked {mark}: {have}, expected {count}")
    order = expect.get("order") or []
    firsts = {}
    for station in order:
        mine = [a for a in alerts if a["station_id"] == station and a["kind"] in ("water_level", "rainfall")]
        if mine:
            firsts[station] = min(datetime.fromisoformat(a["opened_at"].replace("Z", "+00:00")) for a in mine)
    for earlier, later in zip(order, order[1:]):
        if earlier in firsts and later in firsts and firsts[earlier] > firsts[later]:
            problems.append(f"{earlier} alerted at {firsts[earlier]}, after {later} at {firsts[later]}")
        if earlier not in firsts or later not in firsts:
            problems.append(f"order: no alert for {earlier if earlier not in firsts else later}")
    for station in expect.get("upstream_first") or []:  # banjir kiriman: warned before its own gauge rose
        wave = [a["opened_at"] for a in alerts if a["station_id"] == station and a["kind"] == "upstream"]
        own = [a["opened_at"] for a in alerts if a["station_id"] == station and a["kind"] == "water_level"]
        if not wave or (own and min(own) <= min(wave)):
            problems.append(f"{station}: no upstream alert before its own water-level alert")
    reasons = {d.get("reason") for d in dead_letters}
    for reason in expect.get("dead_letters") or []:
        if reason not in reasons:
            problems.append(f"no dead letter with reason {reason} (have {sorted(r for r in reasons if r)})")
    return problems


def test_expectations_checker_reads_peaks_and_order():
    alerts = [
        {"station_id": "PKR-LASKAP", "kind": "water_level", "peak_level": "awas", "opened_at": "2026-11-30T05:00:00Z"},
        {"station_id": "ARR-PONGKERU", "kind": "rainfall", "peak_level": "awas", "opened_at": "2026-11-30T04:00:00Z"},
    ]
    expect = load_scenario("pongkeru-2024")["expect"]
    ids = [s["id"] for s in load_seed_stations()]
    assert check_expectations(expect, alerts, [], ids) == ["MLL-MALILI water_level: peak normal, expected waspada"]
    alerts.append({"station_id": "KLN-WOTU", "kind": "water_level", "peak_level": "siaga", "opened_at": "2026-11-30T05:00:00Z"})
    assert "KLN-WOTU water_level: peak siaga, expected normal" in check_expectations(expect, alerts, [], ids)


def test_expectations_checker_reads_sensor_alerts_and_quality_marks():
    expect = load_scenario("sensor-faults")["expect"]
    ids = ["KLN-WOTU", "MLL-MALILI", "AGK-ANGKONA", "PKR-LASKAP"]
    alerts = [{"station_id": "KLN-WOTU", "kind": "sensor", "peak_level": "waspada", "state": "closed"},
              {"station_id": "AGK-ANGKONA", "kind": "sensor", "peak_level": "waspada", "state": "active"}]
    marks = {"KLN-WOTU": ["good", "spike"], "MLL-MALILI": ["good"], "PKR-LASKAP": ["doubtful"]}
    assert check_expectations({k: expect[k] for k in ("sensor", "quality")}, alerts, [], ids, marks) == [
        "AGK-ANGKONA sensor: alert still open, expected closed",
        "MLL-MALILI water levels marked spike: 0, expected 1",
        "PKR-LASKAP water levels marked doubtful: 1, expected 0"]


def test_every_scenario_documents_its_expectations():
    for name in list_scenarios():
        scenario = load_scenario(name)
        assert scenario.get("expect"), name
        assert name in (ROOT / "docs" / "field.md").read_text(), f"{name} is not described in docs/field.md"


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def mqtt_url(tmp_path):
    """A private Mosquitto (persistent, our own port), or None to let ``ews run`` embed amqtt."""
    if MOSQUITTO is None:
        yield None
        return
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = PrivateMosquitto(directory).start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.skipif(not _service_available(), reason="service.runtime (ews run) is not available yet")
@pytest.mark.parametrize("scenario_name", list_scenarios())
def test_scenario_end_to_end(scenario_name, tmp_path, mqtt_url):
    scenario = load_scenario(scenario_name)
    prefix = f"ewstest/sim-{uuid.uuid4().hex[:8]}"
    service = EwsService(tmp_path / "service", mqtt_url=mqtt_url, prefix=prefix).start()
    try:
        # The service measures silence by arrival time; at --speed max a station that falls
        # silent in simulated time is silent in wall time only from the end of the run on.
        for station_id in (scenario["expect"].get("offline") or {}):
            service.shorten_stale_after(station_id, E2E_STALE_AFTER_S)
        started = datetime.now(timezone.utc)
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "simulate", "--scenario", scenario_name, "--speed", "max",
             "--mqtt-url", service.mqtt_url, "--prefix", prefix, "--seed", "7",
             "--client-id-prefix", f"sim-{uuid.uuid4().hex[:6]}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr + result.stdout
        sent = int(result.stdout.rsplit("done: ", 1)[1].split()[0])

        # Caught up: every reporting station has a reading from the last 20 simulated minutes,
        # and nothing new arrives for a moment.
        silent = {e["station"] for e in scenario.get("events", []) if e["type"] == "silent" and "to_h" not in e}
        reporting = [s["id"] for s in load_seed_stations() if s["id"] not in silent]
        recent = (started - timedelta(minutes=20)).strftime("%Y-%m-%d %H:%M:%S")

        def caught_up():
            rows = service._query("SELECT station_id, MAX(ts) FROM readings GROUP BY station_id")
            latest = {sid: str(ts) for sid, ts in rows}
            return all(sid in latest and latest[sid].replace("T", " ") >= recent for sid in reporting)

        wait_until(caught_up, 120, f"the service to ingest the last samples of {scenario_name}")
        totals = []
        wait_until(lambda: totals.append((service.count_readings(), service.count_dead_letters())) or
                   (len(totals) >= 3 and totals[-1] == totals[-3]), 60, "ingest to settle", interval=0.5)

        ids = [s["id"] for s in load_seed_stations()]
        expect = scenario["expect"]
        problems: list[str] = []

        def matches():
            nonlocal problems
            alerts = service.get_all("/alerts")
            dead = service.get_all("/dead-letters") if expect.get("dead_letters") else []
            marks = {sid: [r["quality"] for r in service.get_all(f"/stations/{sid}/readings", metric="water_level")]
                     for sid in ids} if expect.get("quality") else None
            problems = check_expectations(expect, alerts, dead, ids, marks)
            return not problems

        try:
            # Offline alerts come from the scheduler (every 30 s) after E2E_STALE_AFTER_S of silence.
            wait_until(matches, E2E_STALE_AFTER_S + 120, f"the alerts {scenario_name} expects")
        except AssertionError:
            pytest.fail(f"{scenario_name} ({sent} samples): " + "; ".join(problems))
        print(f"\n{scenario_name}: {sent} samples, {totals[-1][0]} readings, {totals[-1][1]} dead letters; "
              f"alerts as expected")
    finally:
        service.stop()
