"""Scheduled jobs (APScheduler 3): station offline checks and AWAS reminders.

Every job is idempotent (conditional updates), so a job that runs twice, or on
two instances at once, records each event once. With several instances, only the
holder of the ``scheduler`` lease (service/leader.py) runs them: every instance
schedules the jobs, and each run first asks the lease whether it leads.
"""

from __future__ import annotations

import importlib
import logging

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
    """Mark silent stations offline and remind AWAS alerts; never raise into the scheduler."""
    if leader is not None and not leader.is_leader:
        return  # another instance holds the scheduler lease
    try:
        alerting = importlib.import_module("service.alerting")
    except ModuleNotFoundError:
        return
    now = services.clock()
    try:
        offline = alerting.check_offline(services.engine, now, exercise=services.settings.exercise)
        reminded = alerting.remind_awas(services.engine, now)
    except Exception:
        log.exception("scheduled rule jobs failed; will retry next period")
        return
    if offline or reminded:
        log.info("scheduler: %d station(s) went offline, %d AWAS reminder(s)", offline, reminded)
        services.wake_dispatcher()
