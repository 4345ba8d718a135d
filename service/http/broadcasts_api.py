"""``/api/v1/broadcasts``: an operator's own message to the subscribers of some areas, sent by the dispatcher."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts import gsm7
from config.templates import default_templates
from service import audit, subscribers
from service.db import schema
from service.dispatch.expansion import broadcast_body
from service.http import services
from service.http.auth import current_actor
from service.http.errors import VALIDATION_TYPE, Problem, field_error
from service.http.routes import operation
from service.http.schemas import Strict, UTCDateTime
from service.http.subscribers_api import SubscriberAreaSchema

blp = Blueprint("broadcasts", __name__, url_prefix="/api/v1/broadcasts", description="An operator's own message to an area")


class BroadcastIn(Strict):
    """An operator's own message to some areas (and roles), sent through the dispatcher."""

    message = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema), required=True, validate=ma.validate.Length(min=1, max=200))
    roles = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(subscribers.ROLES)),
                           load_default=lambda: ["resident", "staff"], validate=ma.validate.Length(min=1))


class BroadcastSchema(ma.Schema):
    """A recorded broadcast."""

    id = ma.fields.Integer()
    created_at = UTCDateTime()
    created_by = ma.fields.String()
    message = ma.fields.String()
    body = ma.fields.String(metadata={"description": "the text as sent (sender name added, GSM-7)"})
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema))
    roles = ma.fields.List(ma.fields.String())
    recipients = ma.fields.Integer(metadata={"description": "subscribers it goes to (not opted out)"})


@blp.route("")
class Broadcasts(MethodView):
    @operation(blp, "operator", 202, BroadcastSchema, body=BroadcastIn)
    def post(self, data):
        """Queue a message to the subscribers of ``areas`` (and ``roles``); opt-outs respected."""
        svc = services()
        now = svc.clock()
        templates = default_templates()
        try:
            areas = subscribers.clean_areas(data["areas"])
        except subscribers.SubscriberError as exc:
            raise field_error(exc.field, exc.message) from None
        roles = sorted(set(data["roles"]))
        longest = max((broadcast_body(templates, lang, data["message"]) for lang in templates.languages()),
                      key=gsm7.septets)
        if not gsm7.sanitise(data["message"]).strip():
            raise field_error("message", "has no characters an SMS can carry")
        if gsm7.septets(longest) > gsm7.SEGMENT:
            raise Problem(422, f"message: is {gsm7.septets(longest)} characters as sent; at most {gsm7.SEGMENT} "
                          "(one SMS, including the 'BPBD LUTIM: ' prefix)", type=VALIDATION_TYPE,
                          title="Validation failed",
                          errors=[{"field": "message", "message": f"at most {gsm7.SEGMENT} characters as sent"}])
        with svc.engine.begin() as conn:
            broadcast_id = conn.execute(sa.insert(schema.broadcasts).values(
                created_at=now, created_by=current_actor(), body=data["message"], areas=areas, roles=roles,
                dispatch="pending").returning(schema.broadcasts.c.id)).scalar_one()
            audience = subscribers.audience(conn, areas, residents="resident" in roles, staff="staff" in roles,
                                            staff_match_areas=True)
            result = {"id": broadcast_id, "created_at": now, "created_by": current_actor(),
                      "message": data["message"], "body": broadcast_body(templates, "id", data["message"]),
                      "areas": areas, "roles": roles, "recipients": len(audience)}
            audit.record(conn, current_actor(), "broadcast", "broadcast", broadcast_id, None, result, now)
        svc.wake.dispatcher()
        return result
