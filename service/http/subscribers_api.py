"""``/api/v1/subscribers``: residents and staff who receive SMS, one by one or from a CSV file (operator).

Phone numbers are personal data: these routes are for operators and admins only.
"""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from service import audit, phones, subscribers
from service.db import schema
from service.http import changing, reading
from service.http.auth import current_actor
from service.http.errors import Problem, field_error
from service.http.pagination import PageArgs
from service.http.routes import operation, paged_list, where_equal
from service.http.schemas import Strict, UTCDateTime

MAX_CSV_BYTES = 4 * 1024 * 1024

blp = Blueprint("subscribers", __name__, url_prefix="/api/v1/subscribers",
                description="Residents and staff who receive SMS (operator)")
_table = schema.subscribers


class SubscriberAreaSchema(Strict):
    """A place: a desa of a kecamatan, or the whole kecamatan (``desa`` null or omitted)."""

    kecamatan = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    desa = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=120))


class SubscriberSchema(ma.Schema):
    """A subscriber as the API shows it."""

    id = ma.fields.Integer()
    phone = ma.fields.String(metadata={"description": "E.164"})
    name = ma.fields.String(allow_none=True)
    language = ma.fields.String()
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema))
    role = ma.fields.String()
    opted_out = ma.fields.Boolean(metadata={"description": "read-only: set by the SMS keywords BERHENTI/MULAI"})
    opted_out_at = UTCDateTime(allow_none=True)
    source = ma.fields.String(metadata={"description": "api, csv or sms"})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class SubscriberIn(Strict):
    """A new subscriber. ``phone`` accepts what people type (0812-3456-7890, +62 812 …)."""

    phone = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    language = ma.fields.String(load_default="id", validate=ma.validate.OneOf(subscribers.LANGUAGES))
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema), required=True,
                           validate=ma.validate.Length(min=1, max=subscribers.MAX_AREAS))
    role = ma.fields.String(load_default="resident", validate=ma.validate.OneOf(subscribers.ROLES))


class SubscriberPatch(Strict):
    """Fields to change; ``opted_out`` is not one of them (SMS keywords set it)."""

    phone = ma.fields.String(validate=ma.validate.Length(min=1, max=40))
    name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    language = ma.fields.String(validate=ma.validate.OneOf(subscribers.LANGUAGES))
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema), validate=ma.validate.Length(min=1, max=subscribers.MAX_AREAS))
    role = ma.fields.String(validate=ma.validate.OneOf(subscribers.ROLES))


class SubscriberArgs(PageArgs):
    """Filters of the subscriber list."""

    role = ma.fields.String(validate=ma.validate.OneOf(subscribers.ROLES))
    opted_out = ma.fields.Boolean()
    phone = ma.fields.String(validate=ma.validate.Length(max=40))


class ImportRowError(ma.Schema):
    row = ma.fields.Integer(metadata={"description": "line of the file (the header is line 1)"})
    field = ma.fields.String()
    message = ma.fields.String()


class ImportResult(ma.Schema):
    """What a CSV import did."""

    created = ma.fields.Integer()
    ids = ma.fields.List(ma.fields.Integer())
    errors = ma.fields.List(ma.fields.Nested(ImportRowError))


def _problem(exc: subscribers.SubscriberError) -> Problem:
    if isinstance(exc, subscribers.PhoneTaken):
        detail = "This phone number is already registered"
        if exc.existing_id is not None:
            detail += f" (subscriber #{exc.existing_id})"
        return Problem(409, detail + ".", errors=[{"field": "phone", "message": "is already registered"}])
    return field_error(exc.field, exc.message)


def _subscriber(conn, subscriber_id: int):
    """The subscriber's row; a 404 problem when there is none."""
    row = subscribers.get(conn, subscriber_id)
    if row is None:
        raise Problem(404, f"No subscriber #{subscriber_id}.")
    return row


@blp.route("")
class Subscribers(MethodView):
    @paged_list(blp, "operator", SubscriberArgs, SubscriberSchema, order=(_table.c.id,), to_json=subscribers.to_json)
    def get(self, args):
        """List subscribers, newest first."""
        query = where_equal(sa.select(_table), args, ("role", "opted_out"))
        if args.get("phone"):
            try:
                query = query.where(_table.c.phone == phones.normalise(args["phone"]))
            except phones.InvalidPhone as exc:
                raise field_error("phone", str(exc)) from None
        return query

    @operation(blp, "operator", 201, SubscriberSchema, body=SubscriberIn)
    def post(self, data):
        """Register a subscriber; 409 when the phone is already registered."""
        with changing() as (conn, now):
            try:
                row = subscribers.create(conn, data, now)
            except subscribers.SubscriberError as exc:
                raise _problem(exc) from None
            audit.record(conn, current_actor(), "create", "subscriber", row.id, None, subscribers.to_json(row), now)
        return subscribers.to_json(row)


@blp.route("/<int:subscriber_id>")
class SubscriberView(MethodView):
    @operation(blp, "operator", 200, SubscriberSchema)
    def get(self, subscriber_id):
        """One subscriber."""
        with reading() as conn:
            return subscribers.to_json(_subscriber(conn, subscriber_id))

    @operation(blp, "operator", 200, SubscriberSchema, body=SubscriberPatch)
    def patch(self, data, subscriber_id):
        """Change a subscriber's phone, name, language, areas or role."""
        with changing() as (conn, now):
            before = _subscriber(conn, subscriber_id)
            try:
                row = subscribers.update(conn, subscriber_id, data, now)
            except subscribers.SubscriberError as exc:
                raise _problem(exc) from None
            audit.record(conn, current_actor(), "update", "subscriber", subscriber_id,
                         subscribers.to_json(before), subscribers.to_json(row), now)
        return subscribers.to_json(row)

    @operation(blp, "operator", 204)
    def delete(self, subscriber_id):
        """Remove a subscriber (their past notifications stay)."""
        with changing() as (conn, now):
            before = _subscriber(conn, subscriber_id)
            subscribers.delete(conn, subscriber_id)
            audit.record(conn, current_actor(), "delete", "subscriber", subscriber_id,
                         subscribers.to_json(before), None, now)
        return None


@blp.route("/import")
class SubscriberImport(MethodView):
    @operation(blp, "operator", 200, ImportResult)
    @blp.doc(requestBody={"content": {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
    }})
    def post(self):
        """Import ``phone,name,language,kecamatan,desa`` rows (CSV body, or a multipart ``file``); per-row errors."""
        upload = request.files.get("file")
        raw = upload.read(MAX_CSV_BYTES + 1) if upload is not None else request.get_data(cache=False)
        if len(raw) > MAX_CSV_BYTES:
            raise Problem(413, f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB.")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")  # spreadsheets on Windows
        with changing() as (conn, now):  # a SubscriberError is a 422 naming its field (service/http/errors.py)
            result = subscribers.import_csv(conn, text, now)
            audit.record(conn, current_actor(), "create", "subscriber", None, None,
                         {"import": {"created": result["created"], "errors": len(result["errors"])}}, now)
        return result
