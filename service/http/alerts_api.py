"""``/api/v1/stations/{id}/rules`` and ``/api/v1/alerts``: thresholds, alerts and acknowledgement.

Rules: a viewer reads, an admin replaces (``PUT``, a whole document) or patches them (``PATCH``,
JSON Merge Patch into the current rules); both are validated as a whole by
``alerts.station_rules`` and the stored and returned document is the canonical one.
Alerts: a viewer reads, an operator acknowledges and closes by hand.
"""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts.rules import RulesError, rules_to_doc
from alerts.station_rules import patch_rules, replace_rules
from service import alert_control, alert_views, alerting, audit, station_rules
from service.db import schema
from service.http import changing, reading, services
from service.http.auth import current_actor
from service.http.errors import VALIDATION_TYPE, Problem
from service.http.pagination import PageArgs
from service.http.routes import operation, paged_list, where_equal
from service.http.schemas import Strict, UTCDateTime

rules_blp = Blueprint("rules", __name__, url_prefix="/api/v1/stations",
                      description="Thresholds of a station (spec section 3)")
alerts_blp = Blueprint("alerts", __name__, url_prefix="/api/v1/alerts",
                       description="Alerts: one episode per station and kind, with its events")
blp = [rules_blp, alerts_blp]

MAX_NOTE = 1000


# ---------------------------------------------------------------- schemas

class AcknowledgedSchema(ma.Schema):
    by = ma.fields.String()
    at = UTCDateTime()
    note = ma.fields.String(allow_none=True)


class AlertEventSchema(ma.Schema):
    """One change of an alert: raised, escalated, deescalated, acknowledged, cleared or reminded."""

    id = ma.fields.Integer()
    type = ma.fields.String()
    level = ma.fields.String()
    at = UTCDateTime(metadata={"description": "measurement time of the reading (wall time for "
                                              "acknowledged, reminded and offline events)"})
    reading = ma.fields.Dict(allow_none=True, metadata={"description": "{metric, value, ts} that caused it; "
                                                                       "rainfall adds sums, water_level rate_per_hour"})
    by = ma.fields.String(allow_none=True)
    note = ma.fields.String(allow_none=True)


class AlertSchema(ma.Schema):
    """An alert (spec section 2)."""

    id = ma.fields.Integer()
    station_id = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "water_level, rainfall, upstream, offline, battery or siren"})
    level = ma.fields.String()
    peak_level = ma.fields.String()
    state = ma.fields.String(metadata={"description": "active or closed"})
    opened_at = UTCDateTime()
    closed_at = UTCDateTime(allow_none=True)
    acknowledged = ma.fields.Nested(AcknowledgedSchema, allow_none=True)
    exercise = ma.fields.Boolean(metadata={"description": "an exercise: raised by a drill's readings, or "
                                                          "under EWS_EXERCISE (CAP status Exercise)"})
    exercise_id = ma.fields.Integer(allow_none=True, metadata={"description": "the drill (GET /exercises/{id}) "
                                                                              "whose readings raised it; null otherwise"})
    source_station_id = ma.fields.String(allow_none=True, metadata={
        "description": "an upstream alert: the station upstream whose rise it announces (the earliest-arriving "
                       "source at its level); null for other kinds"})
    eta = UTCDateTime(allow_none=True, metadata={
        "description": "an upstream alert: when that wave is expected here (the source's measurement time plus "
                       "the summed travel_s); null for other kinds"})


class AlertDetailSchema(AlertSchema):
    events = ma.fields.List(ma.fields.Nested(AlertEventSchema), metadata={"description": "oldest first"})


class AlertListArgs(PageArgs):
    state = ma.fields.String(validate=ma.validate.OneOf(["active", "closed"]))
    station_id = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    kind = ma.fields.String(validate=ma.validate.OneOf(["water_level", "rainfall", "upstream", "offline", "battery",
                                                        "siren", "sensor"]))
    exercise_id = ma.fields.Integer(validate=ma.validate.Range(min=1, max=2**31 - 1),
                                    metadata={"description": "only the alerts of this exercise"})


class AckSchema(Strict):
    note = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=MAX_NOTE))


class CloseSchema(Strict):
    """Closing an alert by hand (spec section 10)."""

    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_NOTE),
                              metadata={"description": "why: recorded on the `closed` event and in the audit log"})
    all_clear = ma.fields.Boolean(load_default=False, metadata={
        "description": "send residents the all-clear (default false: closing a stuck alert must not say it is safe)"})


RULES_DOC = {
    "description": "The station's whole rules document (spec sections 3 and 9): each `water_level` block "
                   "and rainfall window names `waspada`, `siaga` and `awas` (`null` for a level not used); "
                   "`null` switches a window or section off; other fields left out take their defaults.",
    "content": {"application/json": {"schema": {"type": "object"}, "example": {
        "water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1, "hold_s": 0,
                        "clear_hold_s": 600, "rise_rate": {"per_hour": 0.5, "level": "waspada"}},
        "rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                     "24h": {"waspada": 50, "siaga": 100, "awas": 150}},
        "stale_after_s": 1800, "notify_from": "waspada", "repeat_awas_s": 3600, "all_clear": True}}},
}
RULES_RESPONSE = {"content": {"application/json": {"schema": {"type": "object"}}}}
MERGE_PATCH = "application/merge-patch+json"
RULES_PATCH = {
    "description": "A JSON Merge Patch (RFC 7396) into the station's current rules; `null` switches a "
                   "threshold, window or section off.",
    "content": {MERGE_PATCH: {"schema": {"type": "object"}, "example": {"water_level": {"awas": 3.3}}}},
}


# ---------------------------------------------------------------- rules

def _station_row(conn, station_id: str):
    row = conn.execute(sa.select(schema.stations).where(schema.stations.c.id == station_id)).first()
    if row is None:
        raise Problem(404, f"No station {station_id[:64]!r}.")
    return row


def _rules_body(media_types: tuple[str, ...]) -> dict:
    """The JSON object of the request; 415 for another media type, 422 when it is not an object."""
    if request.mimetype not in media_types:
        raise Problem(415, f"Send the rules as {' or '.join(media_types)}.")
    body = request.get_json(silent=False)
    if not isinstance(body, dict):
        raise Problem(422, "The rules must be a JSON object.", type=VALIDATION_TYPE, title="Validation failed",
                      errors=[{"field": "body", "message": "must be a JSON object"}])
    return body


def _rules_problem(exc: RulesError) -> Problem:
    errors = [{"field": field or "body", "message": message} for field, message in exc.errors]
    return Problem(422, "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                   type=VALIDATION_TYPE, title="Validation failed", errors=errors)


def _change_rules(station_id: str, body: dict, *, patch: bool) -> dict:
    """Replace (PUT) or patch (PATCH) a station's rules, validated as a whole; audited; the new document."""
    with changing() as (conn, now):
        row = _station_row(conn, station_id)
        before = rules_to_doc(station_rules.station_rules(row._mapping))
        try:
            rules = replace_rules(patch_rules(before, body) if patch else body, station_rules.default_rules_doc(),
                                  measured=row.metrics or ())
        except RulesError as exc:
            raise _rules_problem(exc) from None
        doc = rules_to_doc(rules)
        conn.execute(sa.update(schema.stations).where(schema.stations.c.id == station_id)
                     .values(rules=doc, updated_at=now))
        audit.record(conn, current_actor(), "update", "rules", station_id, before, doc, now)
    services().ingestor.forget_stations()  # the ingest path caches station rows and their rules
    return doc


@rules_blp.route("/<station_id>/rules")
class StationRules(MethodView):
    @operation(rules_blp, "viewer", status=None)
    @rules_blp.doc(responses={"200": RULES_RESPONSE})
    def get(self, station_id):
        """The rules of a station (every key; `null` where switched off)."""
        with reading() as conn:
            row = _station_row(conn, station_id)
        return rules_to_doc(station_rules.station_rules(row._mapping))

    @operation(rules_blp, "admin", status=None)
    @rules_blp.doc(requestBody=RULES_DOC, responses={"200": RULES_RESPONSE})
    @rules_blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def put(self, station_id):
        """Replace a station's rules (admin); answers the full rules. Each `water_level` block and
        rainfall window must name `waspada`, `siaga` and `awas` (a number, or null); other fields
        left out take their documented defaults. 422 names every bad field. Judged from the next sample on."""
        return _change_rules(station_id, _rules_body(("application/json",)), patch=False)

    @operation(rules_blp, "admin", status=None)
    @rules_blp.doc(requestBody=RULES_PATCH, responses={"200": RULES_RESPONSE})
    @rules_blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def patch(self, station_id):
        """Change some of a station's rules (admin): a JSON Merge Patch (RFC 7396) into the current
        rules, where `null` switches a threshold or section off; the result is validated as a PUT
        body. Answers the full rules."""
        return _change_rules(station_id, _rules_body((MERGE_PATCH, "application/json")), patch=True)


# ---------------------------------------------------------------- alerts

@alerts_blp.route("")
class Alerts(MethodView):
    @paged_list(alerts_blp, "viewer", AlertListArgs, AlertSchema, order=(schema.alerts.c.opened_at, schema.alerts.c.id),
                to_json=alert_views.alert_to_dict)
    def get(self, args):
        """Alerts, newest first; filter by `state`, `station_id`, `kind`, `exercise_id`."""
        query = alert_views.alerts_query(args.get("state"), args.get("station_id"), args.get("exercise_id"))
        return where_equal(query, args, ("kind",))


@alerts_blp.route("/<int:alert_id>")
class AlertView(MethodView):
    @operation(alerts_blp, "viewer", 200, AlertDetailSchema)
    def get(self, alert_id):
        """One alert with its full event history, oldest first."""
        with reading(missing=f"No alert {alert_id}.") as conn:
            return alert_views.get_alert(conn, alert_id)


@alerts_blp.route("/<int:alert_id>/ack")
class AlertAck(MethodView):
    @operation(alerts_blp, "operator", 200, AlertDetailSchema, body=AckSchema, body_required=False, conflict=True)
    def post(self, data, alert_id):
        """Acknowledge an alert (operator), with an optional `note`; 409 if it was acknowledged before."""
        actor = current_actor()
        with changing(missing=f"No alert {alert_id}.") as (conn, now):  # AlreadyAcknowledged: a 409 (http/errors.py)
            doc = alerting.acknowledge(conn, alert_id, actor, (data or {}).get("note"), now)
            audit.record(conn, actor, "ack", "alert", alert_id, None, doc["acknowledged"], now)
        return doc


@alerts_blp.route("/<int:alert_id>/close")
class AlertClose(MethodView):
    @operation(alerts_blp, "operator", 200, AlertDetailSchema, body=CloseSchema, conflict=True)
    def post(self, data, alert_id):
        """Close an active alert by hand (operator) with a `reason`; residents get the all-clear only with `all_clear: true`."""
        actor = current_actor()
        with changing(missing=f"No alert {alert_id}.") as (conn, now):  # AlreadyClosed: a 409 (http/errors.py)
            doc = alert_control.close(conn, alert_id, actor, data["reason"], now, all_clear=data["all_clear"])
            audit.record(conn, actor, "close", "alert", alert_id, {"state": "active"},
                         {"state": "closed", "reason": data["reason"], "all_clear": data["all_clear"]}, now)
        wake = services().wake
        if data["all_clear"]:
            wake.dispatcher()  # the all-clear goes out now, not at the next poll
        wake.sirens()  # its sirens (and those of the upstream alerts it closed) go off now (spec section 12)
        return doc
