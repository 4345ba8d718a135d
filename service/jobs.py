"""Scheduled jobs (APScheduler 3): station offline checks and AWAS reminders.

Every job is idempotent (conditional updates), so a job that runs twice, or on
two instances at once, records each event once.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)


def schedule_jobs(scheduler, services, period_s: int) -> None:
    """Register the periodic jobs on ``scheduler``."""
    scheduler.add_job(run_rule_jobs, "interval", seconds=period_s, args=[services], id="rules")
    # First run soon after start, not a whole period later.
    scheduler.add_job(run_rule_jobs, "date", args=[services], id="rules-first")


def run_rule_jobs(services) -> None:
    """Mark silent stations offline and remind AWAS alerts; never raise into the scheduler."""
    try:
        alerting = importlib.import_module("service.alerting")
    except ModuleNotFoundError:
        return
    now = services.clock()
    try:
        exercise = services.settings.exercise or services.exercise_now()
        offline = alerting.check_offline(services.engine, now, exercise=exercise)
        reminded = alerting.remind_awas(services.engine, now)
    except Exception:
        log.exception("scheduled rule jobs failed; will retry next period")
        return
    if offline or reminded:
        log.info("scheduler: %d station(s) went offline, %d AWAS reminder(s)", offline, reminded)
        services.wake_dispatcher()
