"""``/api/v1/maintenance``: maintenance windows (spec section 10). A viewer reads, an operator opens and ends them."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from service import audit, maintenance
from service.http import changing, reading, services
from service.http.auth import current_actor
from service.http.routes import operation
from service.http.schemas import Strict, UTCDateTime
from service.http.station_schemas import STATION_ID_RE

blp = Blueprint("maintenance", __name__, url_prefix="/api/v1/maintenance",
                description="Maintenance windows: a station out of service tells residents nothing")


class MaintenanceCreateSchema(Strict):
    """A window to open: at most 7 days."""

    station_id = ma.fields.String(required=True, validate=ma.validate.Regexp(STATION_ID_RE))
    from_ = UTCDateTime(required=True, data_key="from", metadata={"description": "RFC 3339; may be now or later"})
    until = UTCDateTime(required=True, metadata={"description": "RFC 3339, after `from`, at most 7 days after it"})
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))


class MaintenanceSchema(ma.Schema):
    """A maintenance window."""

    id = ma.fields.Integer()
    station_id = ma.fields.String()
    from_ = UTCDateTime(data_key="from", attribute="from")
    until = UTCDateTime(metadata={"description": "when it ends (moved to the end time when ended early)"})
    reason = ma.fields.String()
    by = ma.fields.String(metadata={"description": "who opened it"})
    created_at = UTCDateTime()
    ended_by = ma.fields.String(allow_none=True, metadata={"description": "who ended it early; null otherwise"})
    state = ma.fields.String(metadata={"description": "active (in force or to come) or ended"})


class MaintenanceListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(MaintenanceSchema))


class MaintenanceListArgs(ma.Schema):
    state = ma.fields.String(validate=ma.validate.OneOf(["active", "ended"]))


@blp.route("")
class MaintenanceWindows(MethodView):
    @operation(blp, "viewer", 200, MaintenanceListSchema, query=MaintenanceListArgs)
    def get(self, args):
        """Maintenance windows, newest first; `state=active|ended`."""
        with reading() as conn:
            return {"items": maintenance.listing(conn, args.get("state"), services().clock())}

    @operation(blp, "operator", 201, MaintenanceSchema, body=MaintenanceCreateSchema)
    def post(self, data):
        """Open a window (operator): the station's readings are kept and judged, residents are told nothing."""
        with changing() as (conn, now):  # a FieldError is a 422 naming its field (service/http/errors.py)
            created = maintenance.create(conn, data["station_id"], data["from_"], data["until"], data["reason"],
                                         current_actor(), now)
            audit.record(conn, current_actor(), "create", "maintenance", created["id"], None, created, now)
        return created


@blp.route("/<int:window_id>")
class MaintenanceWindow(MethodView):
    @operation(blp, "operator", 200, MaintenanceSchema, conflict=True)
    def delete(self, window_id):
        """End a window now (operator); an alert still at or above `notify_from` is then announced to residents."""
        with changing(missing=f"No maintenance window {window_id}.") as (conn, now):  # AlreadyEnded: a 409 (errors.py)
            before = maintenance.get(conn, window_id, now)
            ended = maintenance.end(conn, window_id, current_actor(), now)
            audit.record(conn, current_actor(), "end", "maintenance", window_id, before, ended, now)
            announced = maintenance.announce_ended_now(conn, window_id, now)
        if announced:
            services().wake.dispatcher()
        return ended
