"""Scheduled jobs (APScheduler 3): station offline checks, AWAS reminders and CAP issuing.

Every job is idempotent (conditional updates), so a job that runs twice, or on
two instances at once, records each event once. With several instances, only the
holder of the ``scheduler`` lease (service/leader.py) runs them: every instance
schedules the jobs, and each run first asks the lease whether it leads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from service import alerting, cap, exercises, maintenance
from service.leader import Lease
from service.wiring import Shared, nothing

log = logging.getLogger(__name__)

SCHEDULER_PERIOD_S = 30
CAP_POLL_S = 5  # safety net: events another process recorded, a wake-up that was missed


class Scheduler:
    """The timed jobs of one instance: built by service/bootstrap.py, started and stopped by service/runtime.py."""

    def __init__(self, shared: Shared, *, exercise: bool, cap_profile: cap.CapProfile, lease_ttl: float,
                 holder: str, wake_dispatcher: Callable[[], None] = nothing,
                 period_s: int = SCHEDULER_PERIOD_S) -> None:
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        # Every scheduler instance schedules the jobs; only the lease holder runs them (service/leader.py).
        self.leader = Lease(shared.engine, holder=holder, ttl=lease_ttl, on_change=self._lease_changed)
        self.rules = RuleJobs(shared, exercise=exercise, wake_dispatcher=wake_dispatcher, leader=self.leader)
        self.cap = CapJobs(self.scheduler, shared, cap_profile, leader=self.leader)
        self.period_s = period_s

    def start(self) -> None:
        """Schedule the jobs, take part in the lease, and run."""
        self.rules.schedule(self.scheduler, self.period_s)
        self.cap.schedule()
        self.leader.start()
        self.scheduler.start()

    def running(self) -> bool:
        """True while the timed jobs run (``/readyz`` of a worker; only the lease holder acts on them)."""
        return bool(self.scheduler.running)

    def stop(self) -> None:
        """Let a running job finish, then give the lease up so another instance takes over at once."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.leader.stop(release=True)

    def _lease_changed(self, leading: bool) -> None:
        # Took the lease over from a dead leader: run the jobs now, not a period later.
        if leading and self.scheduler.running:
            self.rules.run_soon(self.scheduler)


class RuleJobs:
    """Marks silent stations offline, reminds AWAS alerts, judges held doubtful samples after silence, ends
    exercises and announces maintenance windows that ran out."""

    def __init__(self, shared: Shared, *, exercise: bool, wake_dispatcher: Callable[[], None] = nothing,
                 leader: Lease | None = None) -> None:
        self.shared = shared
        self.exercise = exercise
        self.wake_dispatcher = wake_dispatcher
        self.leader = leader

    def schedule(self, scheduler, period_s: int) -> None:
        """Register the periodic run on ``scheduler``, and a first one soon after start (not a period later)."""
        scheduler.add_job(self.run, "interval", seconds=period_s, id="rules")
        scheduler.add_job(self.run, "date", id="rules-first")

    def run_soon(self, scheduler) -> None:
        """Run once, soon (e.g. right after this instance took the lease over)."""
        scheduler.add_job(self.run, "date", id="rules-now", replace_existing=True)

    def run(self) -> None:
        """One pass, only while holding the lease; never raise into the scheduler."""
        if self.leader is not None and not self.leader.is_leader:
            return  # another instance holds the scheduler lease
        engine, now = self.shared.engine, self.shared.clock()
        try:
            offline = alerting.check_offline(engine, now, exercise=self.exercise)
            reminded = alerting.remind_awas(engine, now)
            overdue = alerting.judge_overdue(engine, now, self.shared.metrics)  # held doubtful samples (spec 17)
            ended = exercises.end_due(engine, now)  # drills whose `until` has come
            announced = maintenance.announce_ended(engine, now)  # windows that ran out: alerts told again
        except Exception:
            log.exception("scheduled rule jobs failed; will retry next period")
            return
        if offline or reminded or ended or announced or overdue:
            log.info("scheduler: %d station(s) went offline, %d AWAS reminder(s), %d exercise(s) ended, "
                     "%d alert(s) announced after maintenance, %d doubtful sample(s) judged after silence",
                     offline, reminded, ended, announced, overdue)
            self.wake_dispatcher()


class CapJobs:
    """Issues CAP messages every ``CAP_POLL_S``, at the next renewal time, and at once when woken.

    The renewal date job is moved to the earliest renewal after every pass, so a chain is
    renewed on time however short its validity (``EWS_CAP_EXPIRES_S`` may be 60 s; the
    rule jobs' 30 s period would be too coarse). Passes never overlap (one lock), and with a
    ``leader`` lease only its holder issues.
    """

    def __init__(self, scheduler, shared: Shared, profile: cap.CapProfile, leader: Lease | None = None) -> None:
        self.scheduler = scheduler
        self.shared = shared
        self.profile = profile
        self.leader = leader
        self._lock = threading.Lock()

    def schedule(self) -> None:
        """Register the poll and a first pass at start."""
        self.scheduler.add_job(self.run, "interval", seconds=CAP_POLL_S, id="cap")
        self.scheduler.add_job(self.run, "date", id="cap-first", misfire_grace_time=None)

    def run(self) -> None:
        """One pass: issue what is due, then move the renewal job to the next renewal."""
        if self.leader is not None and not self.leader.is_leader:
            return
        with self._lock:
            try:
                result = cap.issue_due(self.shared.engine, self.profile, self.shared.clock())
            except Exception:
                log.exception("CAP issuing failed; will retry in %d s", CAP_POLL_S)
                return
        if result.next_at is not None:
            self.scheduler.add_job(self.run, "date", run_date=result.next_at, id="cap-renewal",
                                   replace_existing=True, misfire_grace_time=None)

    def wake(self) -> None:
        """Issue the CAP messages of new alert events now."""
        try:
            self.scheduler.add_job(self.run, "date", id="cap-now", replace_existing=True, misfire_grace_time=None)
        except Exception:  # never let a wake-up break the caller (the ingest loop)
            log.exception("could not wake the CAP job; the next poll issues it")
