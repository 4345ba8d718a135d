"""``/webhooks/twilio``: Twilio's status callbacks and the SMS people send to our number.

The webhooks check ``X-Twilio-Signature`` against ``EWS_PUBLIC_URL`` + path + query with
``TWILIO_AUTH_TOKEN``; without a token (console provider and no shared secret) they answer
404: there is nothing to trust.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from config.templates import default_templates
from service.dispatch import inbound, outbox
from service.http import services
from service.http.errors import Problem

blp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")


def check_signature() -> None:
    """Stop the request (404 or 403) unless Twilio signed it with our token."""
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


@blp.route("/status", methods=["POST"])
def twilio_status():
    """A status callback: apply forward transitions only (duplicates and reordering are harmless)."""
    check_signature()

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

@blp.route("/inbound", methods=["POST"])
def twilio_inbound():
    """An SMS to our number: keywords BERHENTI/STOP, MULAI/START, DAFTAR <desa>, INFO; answered with TwiML."""
    check_signature()
    from twilio.twiml.messaging_response import MessagingResponse


    svc = services()
    with svc.engine.begin() as conn:
        text = inbound.handle(conn, default_templates(), svc.settings.tz, svc.clock(), request.form.get("From", ""),
                              request.form.get("Body", ""), request.form.get("MessageSid") or None)
    twiml = MessagingResponse()
    if text:
        twiml.message(text)
    return Response(str(twiml), mimetype="text/xml")
