"""Scheduled jobs (APScheduler 3): station offline checks, AWAS reminders and CAP issuing.

Every job is idempotent (conditional updates), so a job that runs twice, or on
two instances at once, records each event once. With several instances, only the
holder of the ``scheduler`` lease (service/leader.py) runs them: every instance
schedules the jobs, and each run first asks the lease whether it leads.
"""

from __future__ import annotations

import logging
import threading

from service import alerting, exercises

log = logging.getLogger(__name__)


def schedule_jobs(scheduler, services, period_s: int, leader=None) -> None:
    """Register the periodic jobs on ``scheduler``; with a ``leader`` lease they run only while it is held."""
    scheduler.add_job(run_rule_jobs, "interval", seconds=period_s, args=[services, leader], id="rules")
    # First run soon after start, not a whole period later.
    scheduler.add_job(run_rule_jobs, "date", args=[services, leader], id="rules-first")


def run_now(scheduler, services, leader=None) -> None:
    """Run the jobs once, soon (e.g. right after this instance took the lease over)."""
    scheduler.add_job(run_rule_jobs, "date", args=[services, leader], id="rules-now", replace_existing=True)


def run_rule_jobs(services, leader=None) -> None:
    """Mark silent stations offline, remind AWAS alerts, end exercises that ran out; never raise into the scheduler."""
    if leader is not None and not leader.is_leader:
        return  # another instance holds the scheduler lease
    now = services.clock()
    try:
        offline = alerting.check_offline(services.engine, now, exercise=services.settings.exercise)
        reminded = alerting.remind_awas(services.engine, now)
        ended = exercises.end_due(services.engine, now)  # drills whose `until` has come
    except Exception:
        log.exception("scheduled rule jobs failed; will retry next period")
        return
    if offline or reminded or ended:
        log.info("scheduler: %d station(s) went offline, %d AWAS reminder(s), %d exercise(s) ended",
                 offline, reminded, ended)
        services.wake_dispatcher()


# --- CAP: renewals on time, new events at once ----------------------------------------

CAP_POLL_S = 5  # safety net: events another process recorded, a wake-up that was missed


def schedule_cap_jobs(scheduler, services, leader=None):
    """Issue CAP messages every ``CAP_POLL_S``, at the next renewal time, and at once when woken; return the wake.

    The renewal date job is moved to the earliest renewal after every pass, so a chain is
    renewed on time however short its validity (``EWS_CAP_EXPIRES_S`` may be 60 s; the
    rule jobs' 30 s period would be too coarse). Passes never overlap (one lock), and with a
    ``leader`` lease only its holder issues.
    """
    from service import cap

    profile = cap.cap_profile(services.settings)
    lock = threading.Lock()

    def run() -> None:
        if leader is not None and not leader.is_leader:
            return
        with lock:
            try:
                result = cap.issue_due(services.engine, profile, services.clock())
            except Exception:
                log.exception("CAP issuing failed; will retry in %d s", CAP_POLL_S)
                return
        if result.next_at is not None:
            scheduler.add_job(run, "date", run_date=result.next_at, id="cap-renewal", replace_existing=True,
                              misfire_grace_time=None)

    def wake() -> None:
        try:
            scheduler.add_job(run, "date", id="cap-now", replace_existing=True, misfire_grace_time=None)
        except Exception:  # never let a wake-up break the caller (the ingest loop)
            log.exception("could not wake the CAP job; the next poll issues it")

    scheduler.add_job(run, "interval", seconds=CAP_POLL_S, id="cap")
    scheduler.add_job(run, "date", id="cap-first", misfire_grace_time=None)
    return wake
