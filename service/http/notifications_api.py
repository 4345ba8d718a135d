"""``/api/v1/notifications``: every outgoing SMS and its delivery state (``phone`` only for operators and admins)."""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from service import notification_queue
from service.db import schema
from service.http import reading
from service.http.auth import current_caller
from service.http.pagination import PageArgs
from service.http.routes import operation, paged_list, where_equal
from service.http.schemas import UTCDateTime

STATUSES = ("pending", "sending", "spooled", "sent", "delivered", "undelivered", "failed", "unknown", "superseded",
            "expired")

blp = Blueprint("notifications", __name__, url_prefix="/api/v1/notifications",
                description="Every outgoing SMS and its delivery state")


class NotificationSchema(ma.Schema):
    """One outgoing SMS and its delivery state (``phone`` only for operators and admins)."""

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


class QueueRankSchema(ma.Schema):
    """The messages of one priority not yet handed to the provider."""

    priority = ma.fields.Integer(metadata={"description": "0 (AWAS warning) goes first ... 7 (exercise) last"})
    name = ma.fields.String(metadata={"description": "warning_awas, warning_siaga, warning_waspada, reminder "
                                                     "(and all-clears), reply, broadcast, operational, exercise"})
    queued = ma.fields.Integer(metadata={"description": "pending + sending"})
    pending = ma.fields.Integer(metadata={"description": "waiting for a sender (or for a retry)"})
    sending = ma.fields.Integer(metadata={"description": "claimed by a sender, not yet taken by the provider"})
    oldest_created_at = UTCDateTime(allow_none=True, metadata={"description": "the oldest queued one; null when none"})


class QueueSchema(ma.Schema):
    """The outgoing queue by priority, most urgent first (spec section 10, "Urgent first")."""

    total = ma.fields.Integer()
    priorities = ma.fields.List(ma.fields.Nested(QueueRankSchema), metadata={
        "description": "one item per priority, 0 first, zeros included"})


def _with_phone() -> bool:
    caller = current_caller()
    return caller is not None and caller.role in ("operator", "admin")


def _listed(row) -> dict:
    """A notification as listed: never its claim; its phone only for operators and admins."""
    item = dict(row._mapping)
    for private in ("claimed_by", "claimed_at"):
        item.pop(private, None)
    if not _with_phone():
        item.pop("phone")
    return item


@blp.route("")
class Notifications(MethodView):
    @paged_list(blp, "viewer", NotificationArgs, NotificationSchema, order=(schema.notifications.c.id,),
                to_json=_listed)
    def get(self, args):
        """Outgoing SMS, newest first; ``phone`` only for operators and admins."""
        return where_equal(sa.select(schema.notifications), args, ("alert_id", "status", "subscriber_id", "broadcast_id"))


@blp.route("/queue")
class NotificationQueue(MethodView):
    @operation(blp, "viewer", 200, QueueSchema)
    def get(self):
        """The SMS not yet handed to the provider, counted by priority, most urgent first (no phones, no bodies)."""
        with reading() as conn:
            return notification_queue.summary(conn)
