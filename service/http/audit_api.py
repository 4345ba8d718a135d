"""``/api/v1/audit``: who changed what (admin)."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from service.db import schema
from service.http.pagination import PageArgs
from service.http.routes import paged_list, where_equal
from service.http.schemas import Text, UTCDateTime

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit trail (admin)")


class AuditArgs(PageArgs):
    entity = Text(max_length=32, metadata={"description": "station, rules, subscriber, token, alert, broadcast"})
    entity_id = Text(max_length=64)
    actor = Text(max_length=120, metadata={"description": "token name#id"})
    action = Text(max_length=32)


class AuditSchema(ma.Schema):
    """One change: who, when, what, before and after."""

    id = ma.fields.Integer()
    at = UTCDateTime()
    actor = ma.fields.String()
    action = ma.fields.String()
    entity = ma.fields.String()
    entity_id = ma.fields.String(allow_none=True)
    before = ma.fields.Raw(allow_none=True)
    after = ma.fields.Raw(allow_none=True)


@blp.route("")
class Audit(MethodView):
    @paged_list(blp, "admin", AuditArgs, AuditSchema, order=(schema.audit_log.c.id,),
                to_json=lambda row: dict(row._mapping))
    def get(self, args):
        """The audit trail, newest first."""
        return where_equal(sa.select(schema.audit_log), args, ("entity", "entity_id", "actor", "action"))
