"""``/api/v1/dead-letters``: rejected input, newest first (viewer).

One item per rejected payload (spec section 9). ``reason`` and ``detail`` are those of its first
rejection, as before; ``rejections`` lists each bad sample.
"""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from service import dead_letters as store
from service.db import schema
from service.http.pagination import PageArgs
from service.http.routes import paged_list, where_equal
from service.http.schemas import Text, UTCDateTime

blp = Blueprint("dead_letters", __name__, url_prefix="/api/v1/dead-letters", description="Rejected input")


class DeadLetterArgs(PageArgs):
    reason = Text(max_length=32, metadata={"description": "only payloads with a rejection of this reason, "
                                                          "e.g. unknown_station"})
    station_id = Text(max_length=64, metadata={"description": "only this station"})
    source = ma.fields.String(validate=ma.validate.OneOf(["mqtt", "http"]))
    replayed = ma.fields.Boolean(metadata={"description": "true: only those replayed; false: only those not yet"})


class RejectionSchema(ma.Schema):
    """One rejected sample (or the payload as a whole: index and metric null)."""

    index = ma.fields.Integer(allow_none=True, metadata={"description": "the sample's position in the payload"})
    metric = ma.fields.String(allow_none=True)
    reason = ma.fields.String()
    detail = ma.fields.String()
    ts = ma.fields.String(metadata={"description": "the sample's ts as sent, when known"})


class ReplaySchema(ma.Schema):
    """What ``ews dead-letters replay`` made of it."""

    stored = ma.fields.Integer()
    duplicates = ma.fields.Integer()
    rejected = ma.fields.Integer()
    reasons = ma.fields.List(ma.fields.String())


class DeadLetterSchema(ma.Schema):
    """One rejected payload."""

    id = ma.fields.Integer()
    received_at = UTCDateTime()
    source = ma.fields.String()
    topic = ma.fields.String()
    station_id = ma.fields.String(allow_none=True)
    reason = ma.fields.String(metadata={"description": "the first rejection's reason"})
    detail = ma.fields.String(metadata={"description": "the first rejection's detail, and how many more"})
    reasons = ma.fields.List(ma.fields.String(), metadata={"description": "every reason in this payload"})
    rejected_count = ma.fields.Integer(metadata={"description": "rejections in all; `rejections` lists the first 1000"})
    rejections = ma.fields.List(ma.fields.Nested(RejectionSchema))
    payload = ma.fields.String(metadata={"description": "the payload, whole up to 256 KiB (undecodable bytes escaped)"})
    payload_bytes = ma.fields.Integer(allow_none=True, metadata={"description": "its size as received"})
    truncated = ma.fields.Boolean(metadata={"description": "true when `payload` is not the whole payload"})
    replayed_at = UTCDateTime(allow_none=True)
    replay = ma.fields.Nested(ReplaySchema, allow_none=True)


def dead_letter_json(row) -> dict:
    """The API view of a dead_letters row."""
    doc = {key: row[key] for key in ("id", "received_at", "source", "topic", "station_id", "reason", "detail",
                                     "rejected_count", "payload", "payload_bytes", "truncated", "replayed_at", "replay")}
    doc["reasons"] = row["reasons"].split()
    doc["rejections"] = row["rejections"] or []
    return doc


@blp.route("")
class DeadLetters(MethodView):
    @paged_list(blp, "viewer", DeadLetterArgs, DeadLetterSchema, order=(schema.dead_letters.c.id,),
                to_json=lambda row: dead_letter_json(row._mapping))
    def get(self, args):
        """Rejected payloads, newest first."""
        d = schema.dead_letters
        query = where_equal(sa.select(d), args, ("station_id", "source"))
        if args.get("reason"):
            query = query.where(store.reason_filter(args["reason"]))
        if "replayed" in args:
            query = query.where(d.c.replayed_at.is_not(None) if args["replayed"] else d.c.replayed_at.is_(None))
        return query
