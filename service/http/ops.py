"""Operations endpoints (spec section 6): ``/healthz``, ``/readyz``, ``/metrics``. No token needed."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from service.db import schema
from service.http.errors import Problem

log = logging.getLogger(__name__)

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
def healthz():
    """The process is alive (always 200)."""
    return jsonify({"status": "ok"})


def _database_ok(services) -> str | None:
    """None when ``SELECT 1`` works, else a short reason."""
    try:
        with services.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # any driver error means "not ready"
        return f"database unreachable ({type(exc).__name__})"


# What each role of ``ews run`` must have to be ready (spec section 10), besides the database.
ROLE_CHECKS = {"api": (), "worker": ("dispatcher", "scheduler"), "ingest": ("mqtt",), "all": ("mqtt",)}
CHECK_PROBLEMS = {"mqtt": "MQTT not connected", "dispatcher": "the SMS dispatcher is not running",
                  "scheduler": "the scheduler is not running"}


def _check(services, name: str) -> bool:
    probe = {"mqtt": services.health.mqtt_connected, "dispatcher": services.health.dispatcher_running,
             "scheduler": services.health.scheduler_running}[name]
    try:
        return bool(probe())
    except Exception:  # a probe that fails says "not ready", never 500
        return False


@blp.get("/readyz")
def readyz():
    """200 when what this process runs is ready (its role's checks, named in the body); 503 problem naming what is not."""
    services = current_app.extensions["ews"]
    problems = []
    db_problem = _database_ok(services)
    if db_problem:
        problems.append(db_problem)
    checks = {"database": db_problem is None}
    for name in ROLE_CHECKS.get(services.health.role, ROLE_CHECKS["all"]):
        checks[name] = _check(services, name)
        if not checks[name]:
            problems.append(CHECK_PROBLEMS[name])
    warnings = []
    sms = _sms_providers(services)
    if sms is not None:
        checks["sms"] = sms
        down = [f"{p['name']} ({p['error'] or 'refusing'}, for {p['failing_s']:.0f} s)" for p in sms if p["state"] == "down"]
        if down and len(down) == len(sms):
            problems.append("every SMS provider is down: " + ", ".join(down))
        elif down:
            warnings.append("SMS provider down, the next one carries the messages: " + ", ".join(down))
    if problems:
        raise Problem(503, "Not ready: " + "; ".join(problems) + ".", title="Service Unavailable",
                      headers={"Retry-After": "5"})
    return jsonify({"status": "ready", "checks": checks, "warnings": warnings})


def _sms_providers(services) -> list[dict] | None:
    """The SMS providers' states in a process that sends SMS (None elsewhere): a down one is named.

    A provider that is down while another carries the messages leaves the process ready (a
    warning names it); every provider down makes it unready: no warning can go out.
    """
    router = services.health.sms
    return router.status() if router is not None else None


class DatabaseCollector:
    """Gauges read from the database at scrape time: open alerts and notifications by state."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def describe(self):
        return []

    def collect(self):
        alerts = GaugeMetricFamily("ews_alerts_active", "Open alerts, by level and kind", labels=["level", "kind"])
        notifications = GaugeMetricFamily("ews_notifications", "SMS notifications, by status", labels=["status"])
        carried = GaugeMetricFamily("ews_notifications_by_provider",
                                    "SMS notifications by the provider that carried (or was last tried for) them, by status",
                                    labels=["provider", "status"])
        up = GaugeMetricFamily("ews_database_up", "1 when the scrape could read the database")
        dead = GaugeMetricFamily("ews_dead_letters_bytes", "Bytes of dead letters held (EWS_DEAD_LETTER_MAX_MB caps them)")
        try:
            a, n, d = schema.alerts, schema.notifications, schema.dead_letters
            with self.engine.connect() as conn:
                for level, kind, count in conn.execute(
                    sa.select(a.c.level, a.c.kind, sa.func.count()).where(a.c.state == "active")
                    .group_by(a.c.level, a.c.kind)
                ):
                    alerts.add_metric([level, kind], count)
                for status, count in conn.execute(sa.select(n.c.status, sa.func.count()).group_by(n.c.status)):
                    notifications.add_metric([status], count)
                dead.add_metric([], conn.execute(sa.select(sa.func.coalesce(sa.func.sum(d.c.size_bytes), 0))).scalar_one())
                for provider, status, count in conn.execute(
                    sa.select(n.c.provider, n.c.status, sa.func.count()).where(n.c.provider.is_not(None))
                    .group_by(n.c.provider, n.c.status)
                ):
                    carried.add_metric([provider, status], count)
            up.add_metric([], 1)
        except Exception:
            log.warning("metrics: database not readable", exc_info=True)
            up.add_metric([], 0)
        yield alerts
        yield notifications
        yield dead
        yield carried
        yield up


@blp.get("/metrics")
def metrics():
    """Prometheus text: the process counters plus database gauges read now."""
    services = current_app.extensions["ews"]
    for provider in _sms_providers(services) or []:
        services.metrics.sms_provider_up.labels(provider["name"]).set(0 if provider["state"] == "down" else 1)
    text = generate_latest(services.metrics.registry)
    db_registry = CollectorRegistry(auto_describe=False)
    db_registry.register(DatabaseCollector(services.engine))
    text += generate_latest(db_registry)
    return Response(text, mimetype=None, content_type=CONTENT_TYPE_LATEST)
