"""``/api/v1/dead-letters``: rejected input, newest first (viewer)."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from service.db import schema
from service.http import services
from service.http.auth import require
from service.http.pagination import PageArgs, keyset_page, page_schema
from service.http.schemas import Text, UTCDateTime

blp = Blueprint("dead_letters", __name__, url_prefix="/api/v1/dead-letters", description="Rejected input")


class DeadLetterArgs(PageArgs):
    reason = Text(max_length=32, metadata={"description": "only this reason, e.g. unknown_station"})
    station_id = Text(max_length=64, metadata={"description": "only this station"})
    source = ma.fields.String(validate=ma.validate.OneOf(["mqtt", "http"]))


class DeadLetterSchema(ma.Schema):
    """One rejected sample or payload."""

    class Meta:
        ordered = True

    id = ma.fields.Integer()
    received_at = UTCDateTime()
    source = ma.fields.String()
    topic = ma.fields.String()
    station_id = ma.fields.String(allow_none=True)
    reason = ma.fields.String()
    detail = ma.fields.String()
    payload = ma.fields.String(metadata={"description": "the first 4 KiB of the payload"})


@blp.route("")
class DeadLetters(MethodView):
    @require("viewer")
    @blp.arguments(DeadLetterArgs, location="query")
    @blp.response(200, page_schema(DeadLetterSchema))
    def get(self, args):
        """Rejected input, newest first."""
        d = schema.dead_letters
        query = sa.select(d)
        for key in ("reason", "station_id", "source"):
            if args.get(key):
                query = query.where(d.c[key] == args[key])
        with services().engine.connect() as conn:
            rows, next_cursor = keyset_page(conn, query, (d.c.id,), args)
        return {"items": [dict(r._mapping) for r in rows], "next_cursor": next_cursor}
