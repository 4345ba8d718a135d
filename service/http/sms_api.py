"""Subscribers, notifications and broadcasts (``/api/v1``), and the Twilio webhooks (``/webhooks/twilio``).

Phone numbers are personal data: subscriber routes are for operators and admins; the
notification list shows ``phone`` only to them. The webhooks check ``X-Twilio-Signature``
against ``EWS_PUBLIC_URL`` + path + query with ``TWILIO_AUTH_TOKEN``; without a token
(console provider and no shared secret) they answer 404: there is nothing to trust.
"""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask import Blueprint as PlainBlueprint
from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts import gsm7
from service import audit, subscribers
from service.db import schema
from service.http import services
from service.http.auth import current_actor, current_caller, require
from service.http.errors import VALIDATION_TYPE, Problem, field_error
from service.http.pagination import PageArgs, keyset_page, page_schema
from service.http.schemas import Strict, UTCDateTime

STATUSES = ("pending", "sending", "spooled", "sent", "delivered", "undelivered", "failed", "unknown")
MAX_CSV_BYTES = 4 * 1024 * 1024


class SubscriberAreaSchema(Strict):
    """A place: a desa of a kecamatan, or the whole kecamatan (``desa`` null or omitted)."""

    kecamatan = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    desa = ma.fields.String(allow_none=True, load_default=None, validate=ma.validate.Length(max=120))


class SubscriberSchema(ma.Schema):
    """A subscriber as the API shows it."""

    class Meta:
        ordered = True

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


class NotificationSchema(ma.Schema):
    """One outgoing SMS and its delivery state (``phone`` only for operators and admins)."""

    class Meta:
        ordered = True

    id = ma.fields.Integer()
    alert_id = ma.fields.Integer(allow_none=True)
    event_id = ma.fields.Integer(allow_none=True)
    broadcast_id = ma.fields.Integer(allow_none=True)
    subscriber_id = ma.fields.Integer(allow_none=True)
    phone = ma.fields.String()
    language = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "warning, reminder, all_clear, operational, broadcast, or reply "
                                                     "(the answer to an SMS received through Gammu)"})
    priority = ma.fields.Integer(metadata={"description": "0 (AWAS warning) goes first ... 7 (exercise) last; "
                                                         "alerts.priority, spec section 10"})
    body = ma.fields.String()
    status = ma.fields.String(metadata={"description": ", ".join(STATUSES)})
    attempts = ma.fields.Integer()
    next_attempt_at = UTCDateTime(allow_none=True)
    provider = ma.fields.String(allow_none=True, metadata={
        "description": "the provider that carried it (twilio, gammu, console); before it is sent, the one it was last "
                       "tried at"})
    provider_sid = ma.fields.String(allow_none=True, metadata={
        "description": "the provider's id of the message: Twilio's SM... sid, Gammu's outbox file name"})
    error_code = ma.fields.String(allow_none=True)
    error_message = ma.fields.String(allow_none=True)
    created_at = UTCDateTime()
    sent_at = UTCDateTime(allow_none=True, metadata={"description": "when the provider took it: Twilio accepted it, or "
                                                                  "gammu-smsd moved it to sent/"})
    updated_at = UTCDateTime()


class NotificationArgs(PageArgs):
    """Filters of the notification list."""

    alert_id = ma.fields.Integer()
    status = ma.fields.String(validate=ma.validate.OneOf(STATUSES))
    subscriber_id = ma.fields.Integer()
    broadcast_id = ma.fields.Integer()


class BroadcastIn(Strict):
    """An operator's own message to some areas (and roles), sent through the dispatcher."""

    message = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema), required=True, validate=ma.validate.Length(min=1, max=200))
    roles = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(subscribers.ROLES)),
                           load_default=lambda: ["resident", "staff"], validate=ma.validate.Length(min=1))


class BroadcastSchema(ma.Schema):
    """A recorded broadcast."""

    class Meta:
        ordered = True

    id = ma.fields.Integer()
    created_at = UTCDateTime()
    created_by = ma.fields.String()
    message = ma.fields.String()
    body = ma.fields.String(metadata={"description": "the text as sent (sender name added, GSM-7)"})
    areas = ma.fields.List(ma.fields.Nested(SubscriberAreaSchema))
    roles = ma.fields.List(ma.fields.String())
    recipients = ma.fields.Integer(metadata={"description": "subscribers it goes to (not opted out)"})


def _problem(exc: subscribers.SubscriberError) -> Problem:
    if isinstance(exc, subscribers.PhoneTaken):
        detail = "This phone number is already registered"
        if exc.existing_id is not None:
            detail += f" (subscriber #{exc.existing_id})"
        return Problem(409, detail + ".", errors=[{"field": "phone", "message": "is already registered"}])
    return field_error(exc.field, exc.message)


def _with_phone() -> bool:
    caller = current_caller()
    return caller is not None and caller.role in ("operator", "admin")


def create_blueprint(_services):
    """The API blueprints (subscribers, notifications, broadcasts) and the Twilio webhooks."""
    subs = Blueprint("subscribers", __name__, url_prefix="/api/v1/subscribers",
                     description="Residents and staff who receive SMS (operator)")
    notes = Blueprint("notifications", __name__, url_prefix="/api/v1/notifications",
                      description="Every outgoing SMS and its delivery state")
    casts = Blueprint("broadcasts", __name__, url_prefix="/api/v1/broadcasts",
                      description="An operator's own message to an area")
    hooks = PlainBlueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")
    t = schema.subscribers

    @subs.route("")
    class Subscribers(MethodView):
        @require("operator")
        @subs.arguments(SubscriberArgs, location="query")
        @subs.response(200, page_schema(SubscriberSchema))
        def get(self, args):
            """List subscribers, newest first."""
            query = sa.select(t)
            if "role" in args:
                query = query.where(t.c.role == args["role"])
            if "opted_out" in args:
                query = query.where(t.c.opted_out == args["opted_out"])
            if args.get("phone"):
                from service import phones

                try:
                    query = query.where(t.c.phone == phones.normalise(args["phone"]))
                except phones.InvalidPhone as exc:
                    raise field_error("phone", str(exc)) from None
            with services().engine.connect() as conn:
                rows, cursor = keyset_page(conn, query, (t.c.id,), args)
            return {"items": [subscribers.to_json(r) for r in rows], "next_cursor": cursor}

        @require("operator")
        @subs.arguments(SubscriberIn)
        @subs.response(201, SubscriberSchema)
        def post(self, data):
            """Register a subscriber; 409 when the phone is already registered."""
            svc = services()
            now = svc.clock()
            with svc.engine.begin() as conn:
                try:
                    row = subscribers.create(conn, data, now)
                except subscribers.SubscriberError as exc:
                    raise _problem(exc) from None
                audit.record(conn, current_actor(), "create", "subscriber", row.id, None, subscribers.to_json(row), now)
            return subscribers.to_json(row)

    @subs.route("/<int:subscriber_id>")
    class SubscriberView(MethodView):
        @require("operator")
        @subs.response(200, SubscriberSchema)
        def get(self, subscriber_id):
            """One subscriber."""
            with services().engine.connect() as conn:
                row = subscribers.get(conn, subscriber_id)
            if row is None:
                raise Problem(404, f"No subscriber #{subscriber_id}.")
            return subscribers.to_json(row)

        @require("operator")
        @subs.arguments(SubscriberPatch)
        @subs.response(200, SubscriberSchema)
        def patch(self, data, subscriber_id):
            """Change a subscriber's phone, name, language, areas or role."""
            svc = services()
            now = svc.clock()
            with svc.engine.begin() as conn:
                before = subscribers.get(conn, subscriber_id)
                if before is None:
                    raise Problem(404, f"No subscriber #{subscriber_id}.")
                try:
                    row = subscribers.update(conn, subscriber_id, data, now)
                except subscribers.SubscriberError as exc:
                    raise _problem(exc) from None
                audit.record(conn, current_actor(), "update", "subscriber", subscriber_id,
                             subscribers.to_json(before), subscribers.to_json(row), now)
            return subscribers.to_json(row)

        @require("operator")
        @subs.response(204)
        def delete(self, subscriber_id):
            """Remove a subscriber (their past notifications stay)."""
            svc = services()
            now = svc.clock()
            with svc.engine.begin() as conn:
                before = subscribers.get(conn, subscriber_id)
                if before is None:
                    raise Problem(404, f"No subscriber #{subscriber_id}.")
                subscribers.delete(conn, subscriber_id)
                audit.record(conn, current_actor(), "delete", "subscriber", subscriber_id,
                             subscribers.to_json(before), None, now)
            return None

    @subs.route("/import")
    class SubscriberImport(MethodView):
        @require("operator")
        @subs.response(200, ImportResult)
        @subs.doc(requestBody={"content": {
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
            svc = services()
            now = svc.clock()
            with svc.engine.begin() as conn:
                try:
                    result = subscribers.import_csv(conn, text, now)
                except subscribers.SubscriberError as exc:
                    raise field_error(exc.field, exc.message) from None
                audit.record(conn, current_actor(), "create", "subscriber", None, None,
                             {"import": {"created": result["created"], "errors": len(result["errors"])}}, now)
            return result

    @notes.route("")
    class Notifications(MethodView):
        @require("viewer")
        @notes.arguments(NotificationArgs, location="query")
        @notes.response(200, page_schema(NotificationSchema))
        def get(self, args):
            """Outgoing SMS, newest first; ``phone`` only for operators and admins."""
            n = schema.notifications
            query = sa.select(n)
            for name in ("alert_id", "status", "subscriber_id", "broadcast_id"):
                if args.get(name) is not None:
                    query = query.where(n.c[name] == args[name])
            with services().engine.connect() as conn:
                rows, cursor = keyset_page(conn, query, (n.c.id,), args)
            with_phone = _with_phone()
            items = []
            for row in rows:
                item = dict(row._mapping)
                for private in ("claimed_by", "claimed_at"):
                    item.pop(private, None)
                if not with_phone:
                    item.pop("phone")
                items.append(item)
            return {"items": items, "next_cursor": cursor}

    @casts.route("")
    class Broadcasts(MethodView):
        @require("operator")
        @casts.arguments(BroadcastIn)
        @casts.response(202, BroadcastSchema)
        def post(self, data):
            """Queue a message to the subscribers of ``areas`` (and ``roles``); opt-outs respected."""
            from service.dispatch.outbox import broadcast_body
            from config.templates import default_templates

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
            svc.wake_dispatcher()
            return result

    # -- Twilio webhooks ------------------------------------------------------------------------

    def check_signature() -> None:
        svc = services()
        token = svc.settings.twilio_auth_token
        if not token:
            raise Problem(404, "Webhooks are off: set TWILIO_AUTH_TOKEN (or a shared secret there) to enable them.")
        from twilio.request_validator import RequestValidator

        url = svc.settings.public_url + request.path
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not RequestValidator(token).validate(url, request.form, signature):
            raise Problem(403, "The X-Twilio-Signature header is missing or does not match.")

    @hooks.route("/status", methods=["POST"])
    def twilio_status():
        """A status callback: apply forward transitions only (duplicates and reordering are harmless)."""
        check_signature()
        from service.dispatch import outbox

        svc = services()
        raw_id = request.args.get("notification_id")
        try:
            notification_id = int(raw_id) if raw_id else None
        except ValueError:
            notification_id = None
        outbox.apply_status(
            svc.engine, svc.clock(), notification_id=notification_id,
            sid=request.form.get("MessageSid") or request.form.get("SmsSid"),
            provider_status=request.form.get("MessageStatus") or request.form.get("SmsStatus") or "",
            error_code=request.form.get("ErrorCode") or None, error_message=request.form.get("ErrorMessage"),
        )
        return Response(status=204)

    @hooks.route("/inbound", methods=["POST"])
    def twilio_inbound():
        """An SMS to our number: keywords BERHENTI/STOP, MULAI/START, DAFTAR <desa>, INFO; answered with TwiML."""
        check_signature()
        from twilio.twiml.messaging_response import MessagingResponse

        from config.templates import default_templates
        from service.dispatch import inbound

        svc = services()
        with svc.engine.begin() as conn:
            text = inbound.handle(conn, default_templates(), svc.settings.tz, svc.clock(), request.form.get("From", ""),
                                  request.form.get("Body", ""), request.form.get("MessageSid") or None)
        twiml = MessagingResponse()
        if text:
            twiml.message(text)
        return Response(str(twiml), mimetype="text/xml")

    return [subs, notes, casts, hooks]
