"""Public warnings (spec sections 5 and 15): ``/cap/alerts/{id}.xml`` (CAP 1.2) and ``/cap/feed.atom``. No token.

Both serve the messages ``service.cap`` has issued and stored, unchanged.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from alerts.cap import CAP_MEDIA_TYPE, FeedEntry, atom_feed
from service import cap
from service.http.errors import Problem

blp = Blueprint("cap", __name__)


@blp.get("/cap/alerts/<alert_ref>")
def cap_alert(alert_ref: str):
    """The latest CAP message of a public alert."""
    services = current_app.extensions["ews"]
    number = alert_ref.removesuffix(".xml")
    if not alert_ref.endswith(".xml") or not number.isascii() or not number.isdigit() or len(number) > 18:
        raise Problem(404, "Use /cap/alerts/{id}.xml with a numeric alert id.")
    with services.engine.connect() as conn:
        xml = cap.latest_xml(conn, int(number))
    if xml is None:
        raise Problem(404, f"No public alert #{number} (or no CAP message issued for it yet).")
    return Response(xml, mimetype=CAP_MEDIA_TYPE)


@blp.get("/cap/feed.atom")
def cap_feed():
    """Atom feed of the active public alerts and, for 24 hours, the Cancel of each closed one."""
    services = current_app.extensions["ews"]
    now = services.clock()
    public = services.settings.public_url
    with services.engine.connect() as conn:
        rows = cap.feed_messages(conn, now)
    entries = [FeedEntry(identifier=r.identifier, sender=services.settings.cap_sender, sent=r.sent,
                         headline=r.headline, url=f"{public}/cap/alerts/{r.alert_id}.xml",
                         summary=f"{r.msg_type}: {'NORMAL' if r.msg_type == 'Cancel' else r.level.upper()}")
               for r in rows]
    # Deterministic: the newest message's time, or the clock when the feed is empty.
    updated = max((e.sent for e in entries), default=now)
    xml = atom_feed(entries, feed_url=f"{public}/cap/feed.atom", updated=updated,
                    author_email=services.settings.cap_sender)
    return Response(xml, mimetype="application/atom+xml")
