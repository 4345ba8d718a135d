"""One SMS rate for the whole deployment (spec section 10, issue 15), with real ``ews run`` instances.

Two, then three ``ews run`` processes on one PostgreSQL database send a 2,000-recipient
broadcast at ``EWS_SMS_MAX_PER_SECOND=20`` through the real ``twilio`` library to the local
Twilio-compatible server, which notes each request's arrival from the kernel's receive stamp of its first bytes.
The provider must never see more than 20 messages in any sliding second, the broadcast must be
done within 10 % of 2,000 / 20 = 100 s, and every recipient must get exactly one SMS, also when
one of the three instances is SIGKILLed half-way (its claimed rows are reconciled by the others).

Where the time goes: the slots are ``SHARED_MARGIN`` wider than 1 / 20 s (106 s for 2,000), and each slot a
sender wakes too late for is given up (``ews_sms_rate_slots_missed_total``) and costs one interval. The drill
checks that nothing else costs time (a lost sender, a pump that stalls, a budget left idle) on any machine, and
the issue's goal (within 10 % of 100 s) when the machine had CPU to spare during the run (``SPARE_FOR_GOAL``).
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from service.bench.fanout_bench import max_in_any_second, slots_missed
from service.db import schema
from service.dispatch.dispatcher import _default_concurrency
from service.dispatch.rate import SHARED_MARGIN, Pace
from sinks.twilio import FakeTwilio
from tests.support.infra import fresh_database, postgres_base_url, private_mosquitto, wait_until
from tests.support.instances import Instance
from tests.support.service_process import ProcessApi
from tests.support.services import make_services

pytestmark = [pytest.mark.drill, pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres,
              pytest.mark.skipif(not postgres_base_url(), reason="PostgreSQL: set EWS_TEST_DATABASE_URL (see .ci/run)")]

RECIPIENTS = 2_000
RATE = 20  # SMS per second, for the whole deployment
IDEAL_S = RECIPIENTS / RATE
INTERVAL = Pace(RATE, SHARED_MARGIN).interval  # s between two slots of the shared budget
# Runnable processes per core above which the machine is too busy for a timing this fine: at load 9-10 on
# two cores a sender's request was delayed 35-50 ms on its way out now and then (the provider saw 21 in a
# second) and 5-10 % of the slots were woken for too late (115-117 s); that measures the machine, not the rate.
TOO_BUSY = 2.0
GOAL = 1.10  # the bound on the whole broadcast, as a multiple of the ideal 100 s
# A run over the goal fails when at least this share of the machine's CPU time was idle during the run (the drill's
# own processes leave most of two cores idle), else it is skipped, saying so. The spacing takes 106 s and the start about 0.5 s, so the goal leaves
# 3.5 s (66 slots) for slots given up; with no CPU to spare (other work beside the drill) 95-98 were given up
# (111.3-111.8 s), senders waiting for a core (docs/sms.md, "Where the time goes").
SPARE_FOR_GOAL = 0.2
# Slots that may pass unused when an instance is SIGKILLed: those its sender threads had reserved, and the look-ups
# at the provider (one slot each) that reconcile the rows it had claimed.
UNUSED_AT_KILL = 2 * _default_concurrency(RATE)
# Slots beyond those a run may leave idle: none (to within 0.04 s) in four runs of two instances at 2-3.5 per core;
# with the SIGKILL at up to 5.5 per core (the load rose during the run) 7 beyond its own, senders too slow to keep
# a slot reserved.
IDLE_SLOTS = 5 + RECIPIENTS // 100
TEXT = "Rapat desa siaga bencana Sabtu 09:00 di kantor camat Nuha."


def add_residents(engine) -> set[str]:
    """``RECIPIENTS`` residents of Kecamatan Nuha; return their numbers."""
    now = datetime.now(timezone.utc)
    phones = [f"+62813{i:08d}" for i in range(RECIPIENTS)]
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.subscribers), [
            {"phone": phone, "language": "id", "role": "resident", "opted_out": False, "source": "csv",
             "areas": [{"kecamatan": "Nuha", "desa": None}], "created_at": now, "updated_at": now} for phone in phones])
    return set(phones)


def broadcast_states(engine) -> collections.Counter:
    n = schema.notifications
    with engine.connect() as conn:
        return collections.Counter(conn.execute(sa.select(n.c.status).where(n.c.kind == "broadcast")).scalars())


def skip_if_too_busy() -> None:
    """Skip (saying why) on a machine already running more than ``TOO_BUSY`` processes per core."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load / cores > TOO_BUSY:
        pytest.skip(f"load {load:.1f} on {cores} cores: too busy for the provider-side timing of this drill")


def cpu_times() -> tuple[float, float] | None:
    """The machine's (idle, total) CPU time so far from /proc/stat (idle includes iowait); None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [float(x) for x in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


class LoadDuringRun:
    """How busy the machine was while the broadcast ran: the share of its CPU time left idle (/proc/stat), and
    the 1-minute load average per core, sampled every second (reported; it lags a minute behind)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._cpu = cpu_times()
        self.idle: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="load-sampler", daemon=True)

    def _sample(self) -> None:
        cores = os.cpu_count() or 1
        while True:
            self.samples.append(os.getloadavg()[0] / cores)
            if self._stop.wait(1.0):
                return

    def __enter__(self) -> "LoadDuringRun":
        self._cpu = cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        end = cpu_times()
        if self._cpu is not None and end is not None and end[1] > self._cpu[1]:
            self.idle = (end[0] - self._cpu[0]) / (end[1] - self._cpu[1])

    @property
    def mean(self) -> float:
        return sum(self.samples) / max(1, len(self.samples))

    def busy_for_goal(self) -> bool:
        """True when the machine had too little CPU to spare for the goal to measure the rate."""
        if self.idle is not None:
            return self.idle < SPARE_FOR_GOAL
        return self.mean > 1.0  # no /proc/stat: one runnable process per core


def send_broadcast(tmp_path, figure, count: int, kill_one: bool) -> None:
    skip_if_too_busy()
    with fresh_database("postgresql", tmp_path) as url, private_mosquitto() as broker, \
            FakeTwilio(latency=(0.02, 0.08)) as fake:
        setup = make_services(url)
        engine = setup.engine
        instances: list[Instance] = []
        try:
            phones = add_residents(engine)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
            env.update({**fake.env(), "EWS_DATABASE_URL": url, "EWS_MQTT_URL": broker.url,
                        "EWS_MQTT_TOPIC_PREFIX": f"ewstest/rate-{uuid.uuid4().hex[:8]}", "EWS_HTTP_HOST": "127.0.0.1",
                        "EWS_SMS_MAX_PER_SECOND": str(RATE), "EWS_LOG_LEVEL": "INFO", "EWS_SEED": "luwu-timur"})
            tag = uuid.uuid4().hex[:6]
            instances = [Instance(tmp_path / "instances", f"ews-{tag}-{i}", env).start() for i in range(count)]
            for instance in instances:
                instance.wait_ready()
            api = ProcessApi(instances[0])
            instances[0].token("operator")  # made before the clock starts (``ews token create`` is a process)
            missed_by_killed = 0
            with LoadDuringRun() as load:
                started = time.monotonic()
                api.json("POST", "/broadcasts", {
                    "message": TEXT, "areas": [{"kecamatan": "Nuha", "desa": None}], "roles": ["resident"]},
                    role="operator")
                survivors = instances
                if kill_one:
                    wait_until(lambda: len(fake.creates()) >= RECIPIENTS // 2, 2 * IDEAL_S, "half of the broadcast",
                               interval=0.05)
                    missed_by_killed = slots_missed(instances[-1]) or 0  # its slots given up until now
                    instances[-1].kill()
                    figure("SIGKILLed after", f"{len(fake.creates())} messages, {time.monotonic() - started:.1f} s")
                    survivors = instances[:-1]
                wait_until(lambda: len({r.form["To"] for r in fake.creates()}) >= RECIPIENTS, 2 * IDEAL_S,
                           "every recipient's SMS at the provider", interval=0.1)
            wait_until(lambda: broadcast_states(engine).keys() == {"sent"}, 60, "every broadcast row recorded sent")
            time.sleep(3)  # a resend would show up now
            creates = fake.creates()
            missed = [slots_missed(instance) for instance in survivors] + ([missed_by_killed] if kill_one else [])
            states = broadcast_states(engine)
        finally:
            for instance in instances:
                instance.stop()
            engine.dispose()
    (tmp_path / "arrivals.txt").write_text("".join(f"{r.at - started:.4f} {r.form['To']}\n" for r in creates))
    judge(figure, count, kill_one, [r.at - started for r in creates], [r.form["To"] for r in creates],
          phones, states, missed, load)


def judge(figure, count: int, kill_one: bool, arrivals: list[float], to: list[str], phones: set[str],
          states: collections.Counter, missed: list, load: LoadDuringRun) -> None:
    """The figures of one run (seconds from the ``POST /broadcasts``), then its assertions."""
    took, first = arrivals[-1], arrivals[0]
    busiest = max_in_any_second(arrivals)
    per_phone = collections.Counter(to)
    given_up = sum(m or 0 for m in missed)
    # Every slot from the first request to the last went to a request or was given up (each counted once).
    accounted = first + (len(arrivals) - 1 + given_up) * INTERVAL
    figure("messages at the provider", len(arrivals))
    figure("busiest sliding second", busiest)
    figure("broadcast to first arrival", f"{first:.2f} s")
    figure("broadcast to last arrival", f"{took:.1f} s (ideal {IDEAL_S:.0f} s, goal {GOAL * IDEAL_S:.0f} s)")
    figure("rate slots given up", missed)
    figure("first arrival + (requests - 1 + slots given up) x interval", f"{accounted:.1f} s")
    idle = "not known" if load.idle is None else f"{load.idle:.0%}"
    figure("during the run", f"CPU idle {idle}, load per core mean {load.mean:.2f}, max {max(load.samples, default=0):.2f}")
    figure.summary(f"{count} instances{', one SIGKILLed half-way' if kill_one else ''}: {RECIPIENTS:,} SMS in "
                   f"{took:.1f} s, at most {busiest} in any second (limit {RATE}), {len(per_phone)} recipients, "
                   f"{sum(per_phone.values()) - len(per_phone)} twice, {given_up} slots given up, "
                   f"CPU idle {idle}, load {load.mean:.2f}/core")
    assert busiest <= RATE, "the provider saw more than the deployment's rate in one second"
    assert set(per_phone) == phones and set(per_phone.values()) == {1}, "a recipient got no SMS, or two"
    assert states == {"sent": RECIPIENTS}
    spare = (UNUSED_AT_KILL if kill_one else 0) + IDLE_SLOTS
    assert took <= accounted + spare * INTERVAL, (
        f"the broadcast took {took:.1f} s: {took - accounted:.1f} s more than its requests and the slots given up "
        "account for (a sender lost, a pump stalled, the budget left idle)")
    if took > GOAL * IDEAL_S and load.busy_for_goal():  # missed on a busy machine: not judged (met: passed)
        pytest.skip(f"the rate held (at most {busiest} in a second, each recipient once, {took:.1f} s = its slots); "
                    f"the {GOAL - 1:.0%} goal is not judged on a machine with CPU idle {idle} during the run "
                    f"(under {SPARE_FOR_GOAL:.0%}: {given_up} slots woken for too late measure the machine)")
    assert took <= GOAL * IDEAL_S, f"the broadcast took {took:.1f} s: more than {GOAL - 1:.0%} over {IDEAL_S:.0f} s"


def test_two_instances_share_one_rate_for_a_2000_recipient_broadcast(tmp_path, figure):
    send_broadcast(tmp_path, figure, 2, kill_one=False)


def test_three_instances_share_one_rate_and_a_sigkill_half_way_loses_no_message(tmp_path, figure):
    send_broadcast(tmp_path, figure, 3, kill_one=True)
