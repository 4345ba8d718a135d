"""The SMS dispatcher: expands events into notifications and sends them, at most N per second.

One pump thread expands pending events and broadcasts, recovers stale claims, and hands
claimed rows to a pool of sender threads; the senders share one rate limiter, so the
provider never sees more than ``EWS_SMS_MAX_PER_SECOND`` requests per second. A row is
claimed (``sending``, committed) before its request goes out: a crash can at worst leave
it ``unknown``, and an unknown row is reconciled with the provider before any resend.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts import policy
from alerts.messages import Templates
from service.audience import Audiences
from service.dispatch import expansion, outbox
from service.dispatch.failover import Router
from service.dispatch.providers import OPT_OUT_CODES, Permanent, ProviderError, Transient, Unknown
from service.dispatch.rate import RateLimiter
from service.dispatch.recovery import dead_senders
from service.phones import mask
from service.wiring import Shared

log = logging.getLogger(__name__)
WAIT_DELAY = timedelta(seconds=2)  # a row waiting on one in flight (a more urgent one, its warning) asks again after this


def _default_concurrency(rate: float) -> int:
    # Throughput = workers / latency: with answers of up to ~300 ms, rate * 0.4 workers keep the pace.
    return max(4, min(64, math.ceil(rate * 0.4) + 2))


@dataclasses.dataclass(frozen=True)
class Timing:
    """How the dispatcher paces itself (seconds); production uses the defaults, tests shorten them."""

    concurrency: int | None = None  # sender threads; None: enough for the rate (_default_concurrency)
    poll_interval: float = 1.0
    backoff_base: float = 2.0
    # A warning must go out soon after the provider recovers: retries are never more than 30 s apart.
    backoff_max: float = 30.0
    reconcile_after: float = 15.0  # long enough for the provider to list a message it accepted
    stale_after: float = 120.0
    max_age: float = 6 * 3600.0
    max_wait: float = 5.0


@dataclasses.dataclass(frozen=True)
class Sending:
    """What the dispatcher sends with: the providers, the rate, the texts and where status callbacks go."""

    provider: Router  # one provider or several in failover order
    max_per_second: float
    limiter: RateLimiter  # the deployment's budget of max_per_second (service/dispatch/rate.py)
    tz: ZoneInfo  # for the times written in messages
    public_url: str  # Twilio's status callbacks come back here
    templates: Templates
    staff_match_areas: bool = False
    validity_s: float = 3600  # EWS_SMS_VALIDITY_S: a warning not handed over within it is expired

class Dispatcher:
    """Expands and sends SMS in background threads (``start``/``stop``/``wake``), or once (``run_once``)."""

    def __init__(self, shared: Shared, sending: Sending, timing: Timing = Timing()) -> None:
        self.engine, self.metrics, self._clock = shared.engine, shared.metrics, shared.clock
        self.provider = sending.provider
        self.templates = sending.templates
        self.tz, self.public_url = sending.tz, sending.public_url
        self.limiter = sending.limiter
        self.concurrency = timing.concurrency or _default_concurrency(sending.max_per_second)
        self.poll_interval = timing.poll_interval
        self.backoff_base = timing.backoff_base
        self.backoff_max = timing.backoff_max
        self.reconcile_after = timedelta(seconds=timing.reconcile_after)
        self.stale_after = timedelta(seconds=timing.stale_after)
        self.max_age = timedelta(seconds=timing.max_age)
        self.max_wait = timing.max_wait
        self.staff_match_areas = sending.staff_match_areas
        self.validity_s = sending.validity_s
        self.instance = shared.instance_id[:64]
        self.audiences = Audiences()  # who can be told, by area: read again only when the subscribers changed
        self._wake = threading.Event()  # the pump has something to do: work queued, or a sender freed
        self._queued = threading.Event()  # events or a broadcast were queued (``wake``)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._once_pool: ThreadPoolExecutor | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._idle = threading.Condition(self._inflight_lock)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Dispatcher":
        """Recover what a previous process left in flight, then send in background threads."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self.recover(on_start=True)
        self.provider.warm()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sms-send")
        self._thread = threading.Thread(target=self._pump, name="sms-dispatch", daemon=True)
        self._thread.start()
        return self

    def running(self) -> bool:
        """True while the background sender runs (``/readyz`` of a worker)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let in-flight sends finish (rows still waiting for a slot are given back)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for pool in (self._pool, self._once_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._once_pool = None
        close = getattr(self.provider, "close", None)
        if close:
            close()

    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._queued.set()
        self._wake.set()

    # -- one pass -------------------------------------------------------------------------------

    def run_once(self) -> dict:
        """Expand, reconcile and send everything due now, synchronously; return counts of what was done."""
        stats = {"expanded": self.expand(), "recovered": self.recover(), "reconciled": 0, "sent_attempts": 0}
        if self._once_pool is None:  # kept: each thread holds its own provider client
            self._once_pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sms-once")
        pool = self._once_pool
        unknown = outbox.claim_unknown(self.engine, 1000, self._now(), self.reconcile_after)
        list(pool.map(self._reconcile_one, unknown))
        stats["reconciled"] = len(unknown)
        while True:
            rows = outbox.claim(self.engine, self.instance, self.concurrency, self._now(), self.provider.preferred())
            if not rows:
                break
            list(pool.map(self._send_one, rows))
            stats["sent_attempts"] += len(rows)
        return stats

    def run_until_idle(self, timeout: float = 60.0, pause: float = 0.05) -> dict:
        """``run_once`` until nothing is pending, sending or unknown (retries included), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.run_once()
            left = {k: v for k, v in outbox.counts(self.engine).items() if k in ("pending", "sending", "unknown")}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(pause)

    def expand(self, claimed: list | None = None) -> int:
        """Turn pending events and broadcasts into notifications; return how many were created."""
        # With ``claimed``, the rows free senders can take now are claimed in the events' transaction, into it: on
        # SQLite each write transaction waits for the ingest's batch in hand; expansion and claim were two waits.
        engine, now, total = self.engine, self._now(), 0
        room = 0 if claimed is None or self.limiter.delay() > self.max_wait else self._free_slots()

        def claim_here(conn) -> None:
            claimed.extend(outbox.claim_on(conn, self.instance, room - len(claimed), self._now(),
                                           self.provider.preferred()))
        while True:
            created = expansion.expand_events(engine, self.templates, self.tz, now,
                                              staff_match_areas=self.staff_match_areas, validity_s=self.validity_s,
                                              audiences=self.audiences, then=claim_here if room else None)
            created += expansion.expand_broadcasts(engine, self.templates, now, audiences=self.audiences)
            total += created
            if not expansion.waiting(engine):
                return total

    def recover(self, on_start: bool = False) -> int:
        """Rows stuck in ``sending`` (claimed long ago, or by a dead process on this host) become unknown."""
        dead = dead_senders(outbox.sending_instances(self.engine), self.instance, on_start)
        count = outbox.recover_stale(self.engine, self._now(), self.stale_after, dead)
        if count:
            log.warning("%d SMS were left in flight by a stopped sender; reconciling them before any resend", count)
        return count

    # -- background loop ------------------------------------------------------------------------

    def _pump(self) -> None:
        last_recover = last_look = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                # Events and broadcasts are looked for when something was queued (``wake``) or once a
                # poll interval; a freed sender only claims the next rows (at 200/s that is 200 wakes a second).
                looking = self._queued.is_set() or time.monotonic() - last_look >= self.poll_interval
                if looking:
                    self._queued.clear()
                    last_look = time.monotonic()
                    claimed: list = []
                    self.expand(claimed)
                    for row in claimed:
                        self._submit(self._send_one, row)
                if time.monotonic() - last_recover > max(5.0, self.poll_interval):
                    self.recover()
                    last_recover = time.monotonic()
                self._submit_due(reconcile=looking)
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                log.exception("SMS dispatch cycle failed; retrying")
                self._stop.wait(self.poll_interval)
            self._wake.wait(self.poll_interval)

    def _free_slots(self) -> int:
        with self._inflight_lock:
            return self.concurrency - self._inflight

    def _submit_due(self, reconcile: bool = True) -> None:
        engine = self.engine
        if reconcile:
            for row in outbox.claim_unknown(engine, min(self._free_slots(), 10), self._now(), self.reconcile_after):
                self._submit(self._reconcile_one, row)
        batch = max(1, self.concurrency // 8)  # claim a few rows at a time, not one per freed sender
        while not self._stop.is_set():
            free = self._free_slots()
            # Claim no more than the limiter lets out soon: rows wait in "sending" only briefly.
            if free < batch or self.limiter.delay() > self.max_wait:
                return
            rows = outbox.claim(engine, self.instance, free, self._now(), self.provider.preferred())
            if not rows:
                return
            for row in rows:
                self._submit(self._send_one, row)

    def _submit(self, fn, row) -> None:
        with self._inflight_lock:
            self._inflight += 1

        def run():
            try:
                fn(row)
            finally:
                with self._inflight_lock:
                    self._inflight -= 1
                    self._idle.notify_all()
                self._wake.set()  # a slot is free: the pump may claim more

        self._pool.submit(run)

    # -- sending one ----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _callback_url(self, notification_id: int) -> str:
        return f"{self.public_url}/webhooks/twilio/status?notification_id={notification_id}"

    def _backoff(self, attempts: int) -> float:
        value = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempts - 1)))
        return value * random.uniform(0.5, 1.0)  # jitter: retries of many rows do not come back together

    def _send_one(self, row) -> None:
        engine, metrics = self.engine, self.metrics
        if self._dropped(row):
            return
        holding, plans = [row], {}

        def before_slot():
            self._most_urgent(holding)
            if holding[0] is not None and holding[0].id not in plans:
                plans[holding[0].id] = self.provider.prepare(holding[0])

        wait = self.limiter.acquire(self._stop, self.max_wait, at_slot=before_slot)
        row = holding[0]
        if row is None:
            return  # swapped for a more urgent row that was no longer worth sending: the slot goes unused
        if wait is not None:
            # Stopping, or paused (429) / far behind: give the row back rather than hold it in "sending".
            outbox.release(engine, row, self.instance, self._now(), self._now() + timedelta(seconds=wait))
            return
        started = time.monotonic()
        try:
            result = self.provider.send(row.phone, row.body, self._callback_url(row.id), notification=row,
                                        plan=plans.get(row.id))
        except ProviderError as exc:
            metrics.provider_latency.observe(time.monotonic() - started)
            self._send_failed(row, exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in a provider must not lose the row
            log.exception("SMS provider raised unexpectedly for notification %s", row.id)
            self._send_failed(row, Unknown(f"{type(exc).__name__}: {exc}"))
            return
        metrics.provider_latency.observe(time.monotonic() - started)
        metrics.sms_sent.labels("sent").inc()
        self._write(outbox.mark_sent, engine, row.id, result.provider or self.provider.name, result.sid, result.status, self._now())
        log.info("SMS %s to %s sent (%s)", row.id, mask(row.phone), result.sid)

    def _most_urgent(self, holding: list) -> None:
        """Just before our slot: a more urgent due row in place of ``holding[0]``; None if that one is stale, or while
        another sender holds a more urgent one unsent (ours given back)."""
        if holding[0] is None:
            return
        # A live sender hands its row over within about max_wait of its claim; older 'sending' rows are at the
        # provider already or left by a dead sender (recovery's), and hold nothing back.
        held_within = timedelta(seconds=2 * self.max_wait)
        urgent = outbox.more_urgent(self.engine, holding[0], self.instance, self._now(), held_within)
        if urgent is None:  # another sender holds a more urgent row, unsent: ours goes after it (spec 10)
            now = self._now()
            outbox.release(self.engine, holding[0], self.instance, now, now + WAIT_DELAY)
            holding[0] = None
        elif urgent is not holding[0]:
            holding[0] = None if self._dropped(urgent) else urgent

    def _dropped(self, row) -> bool:
        """True when ``row`` is no longer worth sending (``alerts.policy.fate``); it is then recorded so."""
        fate = outbox.fate(self.engine, row, self._now())
        if fate is None:
            return False
        if fate == policy.WAIT:
            now = self._now()
            outbox.release(self.engine, row, self.instance, now, now + WAIT_DELAY)
            return True
        if outbox.drop(self.engine, row, self.instance, fate, self._now()):
            self.metrics.sms_sent.labels(fate).inc()
            log.info("SMS %s to %s not sent: %s", row.id, mask(row.phone), fate)
        return True

    def _send_failed(self, row, exc: ProviderError) -> None:
        engine, metrics, now = self.engine, self.metrics, self._now()
        expired = now - row.created_at > self.max_age
        if isinstance(exc, Permanent):
            metrics.sms_sent.labels("failed").inc()
            opt_out = exc.code is not None and exc.code.isdigit() and int(exc.code) in OPT_OUT_CODES
            self._write(outbox.mark_failed, engine, row, self.instance, exc.code, exc.message, now, opt_out)
            log.warning("SMS %s to %s failed permanently: %s %s", row.id, mask(row.phone), exc.code, exc.message)
        elif isinstance(exc, Transient):
            metrics.sms_sent.labels("retry").inc()
            if exc.retry_after:
                self.limiter.pause_until(time.monotonic() + exc.retry_after)
            if expired:
                self._write(outbox.mark_failed, engine, row, self.instance, "expired", f"gave up: {exc.message}", now)
                return
            delay = max(exc.retry_after or 0.0, self._backoff(row.attempts))
            self._write(outbox.mark_retry, engine, row, self.instance, now + timedelta(seconds=delay), exc.code,
                        exc.message, now)
            log.info("SMS %s to %s: %s %s; retry in %.1f s", row.id, mask(row.phone), exc.code, exc.message, delay)
        else:
            metrics.sms_sent.labels("unknown").inc()
            if exc.retry_after:
                self.limiter.pause_until(time.monotonic() + exc.retry_after)
            delay = max(self.reconcile_after.total_seconds(), exc.retry_after or 0.0)
            self._write(outbox.mark_unknown, engine, row, self.instance, now + timedelta(seconds=delay), exc.code,
                        exc.message, now)
            log.warning("SMS %s to %s: outcome unknown (%s); reconciling in %.0f s", row.id, mask(row.phone),
                        exc.message, delay)

    def _reconcile_one(self, row) -> None:
        """Settle an unknown row: found at the provider -> sent; not found -> send again."""
        engine = self.engine
        now = self._now()
        if now - row.created_at > self.max_age:
            outbox.mark_failed(engine, row, None, "expired", "outcome unknown and too old to resend", now)
            return
        found = None
        if getattr(self.provider, "can_lookup", False):
            if self.limiter.acquire(self._stop, self.max_wait) is not None:
                return  # the lease runs out and the row is looked at again
            try:
                found = self.provider.lookup(row.phone, row.body, row.claimed_at or row.created_at, notification=row)
            except ProviderError as exc:
                log.info("cannot reconcile SMS %s yet: %s", row.id, exc.message)
                outbox.delay_unknown(engine, row, now + timedelta(seconds=max(self._backoff(row.attempts), 1.0)), now)
                return
        if found is not None:
            self.metrics.sms_sent.labels("reconciled").inc()
            self._write(outbox.mark_sent, engine, row.id, found.provider or self.provider.name, found.sid, found.status, now)
            log.info("SMS %s to %s was accepted after all (%s)", row.id, mask(row.phone), found.sid)
            return
        # Not at the provider (or it cannot tell): send again. A rare duplicate beats a missed warning.
        if outbox.requeue_unknown(engine, row, now, now + timedelta(seconds=self._backoff(row.attempts))):
            log.info("SMS %s to %s not found at the provider; sending again", row.id, mask(row.phone))

    def _write(self, fn, *args) -> None:
        """A state write, retried briefly: losing it would resend an accepted message."""
        for attempt in range(5):
            try:
                fn(*args)
                return
            except Exception:  # noqa: BLE001
                if attempt == 4:
                    log.exception("cannot record an SMS outcome; the row will be reconciled")
                    return
                self._stop.wait(0.2 * (attempt + 1)) if not self._stop.is_set() else time.sleep(0.2)
