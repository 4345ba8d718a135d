"""``/api/v1/sirens``: every siren's state (viewer) and operators' commands (spec section 12).

A command is stored and answered 202: the siren controller thread of the instance holding the MQTT
connection publishes it within a moment and re-sends it until the siren answers (docs/sirens.md).
The domain is ``service/sirens/operators.py``; every command is audited.
"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts import sirens as siren_rules
from service import audit
from service.sirens import operators as sirens
from service.http import changing, reading, services
from service.http.auth import current_actor
from service.http.errors import Problem
from service.http.pagination import PageArgs, decode_cursor, encode_cursor, page_schema
from service.http.routes import operation
from service.http.schemas import Strict
from service.http.station_schemas import STATION_ID_RE

blp = Blueprint("sirens", __name__, url_prefix="/api/v1/sirens",
                description="Sirens: what each was told and answered; operators' commands")


class SirenCommandCreateSchema(Strict):
    """An operator's command to one siren."""

    action = ma.fields.String(required=True, validate=ma.validate.OneOf(list(siren_rules.ACTIONS)), metadata={
        "description": "on (wins over the automatic decision until the alert's level changes), off (the same), "
                       "or test (a short sound; changes nothing else)"})
    duration_s = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(
        min=siren_rules.MIN_DURATION_S, max=siren_rules.MAX_DURATION_S), metadata={
        "description": f"how long it sounds: on (default the siren's duration_s), test (default "
                       f"{siren_rules.DEFAULT_TEST_DURATION_S}); ignored for off"})


class SirenCommandSchema(ma.Schema):
    """A command as stored: what was published, how often, and the siren's answer."""

    command_id = ma.fields.String()
    action = ma.fields.String()
    level = ma.fields.String(allow_none=True)
    duration_s = ma.fields.Integer()
    alert_id = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String(metadata={"description": "on, level, renewal, off (automatic), operator, test"})
    by = ma.fields.String(allow_none=True, metadata={"description": "the operator; null when automatic"})
    sent_at = ma.fields.String()
    expires_at = ma.fields.String()
    status = ma.fields.String(metadata={"description": "pending (awaiting its ack), acked, unanswered, superseded"})
    attempts = ma.fields.Integer(metadata={"description": "how often it was published"})
    last_sent_at = ma.fields.String(allow_none=True)
    ack = ma.fields.Dict(allow_none=True)
    acked_at = ma.fields.String(allow_none=True)


class SirenSchema(ma.Schema):
    """A siren (spec section 12)."""

    id = ma.fields.String()
    station_id = ma.fields.String()
    at = ma.fields.String()
    upstream = ma.fields.Boolean()
    duration_s = ma.fields.Integer()
    state = ma.fields.String(metadata={"description": "on, off, unknown, error: the last acknowledged state"})
    trouble = ma.fields.String(allow_none=True, metadata={"description": "silent or error while its siren alert is open"})
    on_until = ma.fields.String(allow_none=True, metadata={"description": "when the last on runs out"})
    override = ma.fields.Dict(allow_none=True, metadata={"description": "an operator's on/off that wins for now"})
    last_command = ma.fields.Nested(SirenCommandSchema, allow_none=True)
    last_ack = ma.fields.Dict(allow_none=True, metadata={"description": "{command_id, state, detail, at, action}"})


def _no_siren(siren_id: str) -> str:
    return f"No siren {siren_id!r}: no station lists it."


def _siren_id(siren_id: str) -> str:
    if not STATION_ID_RE.match(siren_id):
        raise Problem(404, f"No siren {siren_id[:64]!r}.")
    return siren_id


@blp.route("")
class Sirens(MethodView):
    @operation(blp, "viewer", 200, page_schema(SirenSchema), query=PageArgs)
    def get(self, args):
        """Every siren of the registry, by id, with its last command and its last ack."""
        after = decode_cursor(args["cursor"], ("id",))[0] if args.get("cursor") else None
        with reading() as conn:
            items, last = sirens.list_sirens(conn, after, int(args["limit"]))
        return {"items": items, "next_cursor": None if last is None else encode_cursor((last,))}


@blp.route("/<siren_id>")
class SirenView(MethodView):
    @operation(blp, "viewer", 200, SirenSchema)
    def get(self, siren_id):
        """One siren."""
        with reading(missing=_no_siren(siren_id)) as conn:
            return sirens.get_siren(conn, _siren_id(siren_id))


@blp.route("/<siren_id>/commands")
class SirenCommands(MethodView):
    @operation(blp, "operator", 202, SirenCommandSchema, body=SirenCommandCreateSchema, conflict=True)
    def post(self, data, siren_id):
        """An operator's command (operator): stored, published by the siren controller, re-sent until answered; audited."""
        svc = services()
        with changing(missing=_no_siren(siren_id)) as (conn, now):  # SirenBusy is a 409 (service/http/errors.py)
            command = sirens.operator_command(conn, _siren_id(siren_id), data["action"], data.get("duration_s"),
                                              current_actor(), now, svc.settings.siren_ack_timeout_s)
            audit.record(conn, current_actor(), "command", "siren", siren_id, None, command, now)
        svc.wake.sirens()
        return command
