"""Several SMS providers in failover order (``EWS_SMS_PROVIDER=twilio,gammu``, spec section 13).

The dispatcher always talks to a ``Router``, also for a single provider. For each message:

- It goes to the first provider that is not *down*. A provider is down once it has refused
  or could not be reached (connection errors, 5xx, 429, an unusable Gammu spool or a daemon
  that stopped sending) for longer than ``EWS_SMS_FAILOVER_S`` without one accepted message.
  During those first seconds the message is retried at that provider, as before.
- While an earlier provider is down, one message every ``EWS_SMS_FAILOVER_S`` *probes* it
  first; if it is refused (a 5xx answer included: the provider is still refusing), the same
  message goes on through the next provider at once. An accepted probe brings the provider
  back: the next messages go to it again. A probe that times out is unknown, like any other.
- Before a request goes out, the notification records the provider it is tried at
  (``notifications.provider``, committed), so a message whose outcome is unknown (a timeout
  after sending, a crash) is reconciled at *that* provider, and is not sent through another
  until that provider says it does not have it: one message per subscriber per event.
  One exception, because the spec counts a 5xx answer as a refusal: when that provider is
  down and cannot even answer the lookup, a message it answered with a 5xx counts as not
  accepted and goes through the next.
- A reply to a received SMS goes back through the provider that receives (Gammu).
- A permanent error is the provider answering: it marks the message failed, not the
  provider down. A full modem queue (``Busy``) says nothing about health either.

Health lives in the process (each dispatching instance watches for itself); ``status()``
feeds ``/readyz`` and ``/metrics`` (``ews_sms_provider_up``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import sqlalchemy as sa

from service.db import schema
from service.dispatch.gammu import GammuProvider
from service.dispatch.providers import Busy, ConsoleProvider, Permanent, ProviderError, Transient, TwilioProvider

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _State:
    failing_since: float | None = None
    last_error: str | None = None
    last_probe: float | None = None
    observed: bool = False  # failing because the provider itself reported a problem (not a refused message)


class Health:
    """Which providers are up, failing (refusing, not yet for ``failover_s``) or down. Pure; clock injected."""

    def __init__(self, names: list[str], failover_s: float, clock=time.monotonic) -> None:
        self.names = list(names)
        self.failover_s = failover_s
        self.clock = clock
        self._states = {name: _State() for name in names}
        self._lock = threading.Lock()

    def refused(self, name: str, why: str, observed: bool = False) -> None:
        """``name`` refused a message or cannot be reached (``observed``: it reported a problem itself)."""
        with self._lock:
            state = self._states[name]
            if state.failing_since is None:
                state.failing_since = self.clock()
                state.observed = observed
            state.last_error = why

    def problem_gone(self, name: str) -> None:
        """The problem ``name`` reported has gone: up again, unless messages are being refused too."""
        with self._lock:
            state = self._states[name]
            if state.failing_since is not None and state.observed:
                state.failing_since, state.last_error, state.observed = None, None, False

    def answered(self, name: str) -> None:
        """``name`` accepted a message (or answered with a permanent error): it is up."""
        with self._lock:
            state = self._states[name]
            state.failing_since, state.last_error = None, None

    def down(self, name: str) -> bool:
        """True once ``name`` has been refusing for ``failover_s`` or longer."""
        with self._lock:
            since = self._states[name].failing_since
            return since is not None and self.clock() - since >= self.failover_s

    def take_probe(self, name: str) -> bool:
        """True (and the probe counted) when down ``name`` is due for a probe message."""
        with self._lock:
            state = self._states[name]
            now = self.clock()
            if state.last_probe is not None and now - state.last_probe < self.failover_s:
                return False
            state.last_probe = now
            return True

    def snapshot(self) -> list[dict]:
        """Each provider's ``{name, state, failing_s, error}`` (state: up, failing, down)."""
        now = self.clock()
        out = []
        with self._lock:
            for name in self.names:
                state = self._states[name]
                failing = None if state.failing_since is None else now - state.failing_since
                word = "up" if failing is None else ("down" if failing >= self.failover_s else "failing")
                out.append({"name": name, "state": word, "failing_s": None if failing is None else round(failing, 1),
                            "error": state.last_error})
        return out


class Router:
    """The providers in failover order behind the one ``send``/``lookup`` port the dispatcher uses."""

    def __init__(self, providers: list, *, failover_s: float = 60.0, metrics=None, engine=None,
                 instance: str | None = None, clock=time.monotonic) -> None:
        if not providers:
            raise ValueError("a Router needs at least one provider")
        self.providers = list(providers)
        self.health = Health([p.name for p in self.providers], failover_s, clock)
        self.metrics = metrics
        self.engine = engine
        self.instance = None if instance is None else str(instance)[:64]
        self.name = ",".join(p.name for p in self.providers)
        self.can_lookup = any(p.can_lookup for p in self.providers)

    def provider(self, name: str):
        """The provider called ``name``, or None."""
        return next((p for p in self.providers if p.name == name), None)

    # -- sending ---------------------------------------------------------------------------------

    def preferred(self) -> str | None:
        """The provider a claimed message will most likely be tried at (recorded by the claim), if recorded at all."""
        if self.engine is None or self.instance is None:
            return None
        usable = [p for p in self.providers if not self.health.down(p.name)]
        return (usable or self.providers)[0].name

    def prepare(self, notification) -> list:
        """The providers to try for ``notification``, the first recorded on it: done before its rate slot, so
        that a database write does not delay the request (and bunch it with the next one)."""
        candidates = self.plan(notification)
        if candidates[0].name != getattr(notification, "provider", None):  # the claim recorded the likely one
            self._bind(notification, candidates[0].name)
        return candidates

    def warm(self) -> None:
        """Let each provider load what it loads on first use now, not in the first warning's request."""
        for provider in self.providers:
            if hasattr(provider, "warm"):
                provider.warm()

    def send(self, to: str, body: str, callback_url: str | None = None, notification=None, plan=None):
        """Send through the provider the rules pick (or ``plan``, from ``prepare``); raise the last one's error."""
        candidates = plan if plan is not None else self.plan(notification)
        error: ProviderError | None = None
        for provider in candidates:
            probing = self.health.down(provider.name)
            if plan is None or provider is not plan[0]:
                self._bind(notification, provider.name)
            try:
                result = self._call(provider, "send", to, body, callback_url, notification=notification)
            except Busy:
                self._count(provider.name, "busy")
                raise
            except Permanent:
                self._answered(provider.name, "failed")
                raise
            except Transient as exc:
                self._refused(provider.name, "refused", exc)
                error = exc
                continue  # not accepted: the next candidate may take it now
            except ProviderError as exc:  # Unknown: bound to this provider until reconciled
                if probing and _answered_5xx(exc.code) and len(candidates) > 1:
                    self._refused(provider.name, "refused", exc)  # a down provider's 5xx: still refusing
                    error = exc
                    continue
                self._refused(provider.name, "unknown", exc)
                raise
            self._answered(provider.name, "accepted")
            return dataclasses.replace(result, provider=provider.name)
        raise error

    def plan(self, notification=None) -> list:
        """The providers to try for one message, in order (usually one; a probe first when due)."""
        self._note_problems()
        if getattr(notification, "kind", None) == "reply":
            receiver = next((p for p in self.providers if getattr(p, "receives", False)), None)
            if receiver is not None:
                return [receiver]
        usable = [p for p in self.providers if not self.health.down(p.name)]
        if not usable:
            return list(self.providers)  # all down: try each in turn
        first = usable[0]
        earlier = self.providers[:self.providers.index(first)]
        probe = next((p for p in earlier if self.health.take_probe(p.name)), None)
        return [probe, first] if probe is not None else [first]

    def _note_problems(self) -> None:
        for provider in self.providers:
            problem = getattr(provider, "problem", None)
            if problem is None:
                continue
            why = problem()
            if why:
                self.health.refused(provider.name, why, observed=True)
            else:
                self.health.problem_gone(provider.name)

    def _bind(self, notification, name: str) -> None:
        """Commit which provider the claimed notification is tried at, before the request goes out."""
        if self.engine is None or notification is None or self.instance is None:
            return
        n = schema.notifications
        with self.engine.begin() as conn:
            conn.execute(sa.update(n).where(n.c.id == notification.id, n.c.status == "sending",
                                            n.c.claimed_by == self.instance, n.c.attempts == notification.attempts)
                         .values(provider=name))

    # -- reconciling -----------------------------------------------------------------------------

    def lookup(self, to: str, body: str, since, notification=None):
        """Find a message of unknown outcome at the provider it was tried at (at every one if not recorded)."""
        bound = getattr(notification, "provider", None)
        targets = [self.provider(bound)] if self.provider(bound) is not None else self.providers
        for provider in targets:
            if not provider.can_lookup:
                continue
            try:
                found = self._call(provider, "lookup", to, body, since, notification=notification)
            except ProviderError as exc:
                if self._refused_for_good(provider.name, notification):
                    log.warning("%s is down and cannot be asked; its 5xx answer counts as a refusal: the message goes "
                                "through the next provider", provider.name)
                    continue
                raise exc
            if found is not None:
                return dataclasses.replace(found, provider=provider.name)
        return None

    def _refused_for_good(self, name: str, notification) -> bool:
        answered = _answered_5xx(getattr(notification, "error_code", None))
        return answered and self.health.down(name) and len(self.providers) > 1

    # -- state for /readyz and /metrics ----------------------------------------------------------

    def status(self) -> list[dict]:
        """Each provider's state (``up``, ``failing``, ``down``), how long it has failed and why."""
        self._note_problems()
        return self.health.snapshot()

    def close(self) -> None:
        """Close every provider."""
        for provider in self.providers:
            provider.close()

    def _call(self, provider, method: str, *args, notification=None):
        if getattr(provider, "wants_notification", False):
            return getattr(provider, method)(*args, notification=notification)
        return getattr(provider, method)(*args)

    def _answered(self, name: str, outcome: str) -> None:
        self.health.answered(name)
        self._count(name, outcome)

    def _refused(self, name: str, outcome: str, exc: ProviderError) -> None:
        self.health.refused(name, f"{exc.code or ''} {exc.message}".strip()[:200])
        self._count(name, outcome)

    def _count(self, name: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.sms_provider_requests.labels(name, outcome).inc()


def _answered_5xx(code) -> bool:
    """True for an HTTP 5xx status as the error code: the provider answered, refusing (spec section 13)."""
    code = str(code or "")
    return code.isdigit() and 500 <= int(code) <= 599


def as_router(provider) -> Router:
    """``provider`` itself when it is a Router, else a Router of that one provider."""
    return provider if isinstance(provider, Router) else Router([provider])


def make_provider(settings, metrics=None, engine=None, instance: str | None = None) -> Router:
    """The providers ``EWS_SMS_PROVIDER`` names, in failover order, configured from the settings."""
    providers = []
    for name in settings.sms_providers:
        if name == "twilio":
            providers.append(TwilioProvider(
                settings.twilio_account_sid, settings.twilio_auth_token, from_number=settings.twilio_from_number,
                messaging_service_sid=settings.twilio_messaging_service_sid, base_url=settings.twilio_api_base_url))
        elif name == "gammu":
            providers.append(GammuProvider(settings.gammu_spool, fmt=settings.gammu_outbox_format,
                                           outbox_max=settings.gammu_outbox_max))
        else:
            providers.append(ConsoleProvider())
    return Router(providers, failover_s=settings.sms_failover_s, metrics=metrics, engine=engine, instance=instance)
