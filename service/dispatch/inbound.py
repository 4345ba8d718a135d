"""Inbound SMS keywords: BERHENTI/STOP, MULAI/START, DAFTAR <desa>, INFO (case-insensitive).

``handle(...)`` applies the keyword and returns the reply text (sent back as TwiML by the
webhook). A webhook retry carrying the same MessageSid gets the stored reply and changes
nothing a second time. ``handle_once(...)`` is the same for a message read from Gammu's
inbox by several instances at once: it claims the message id first and answers None when
someone else has handled it; ``queue_reply(...)`` then queues the answer as a notification
(kind ``reply``) that goes back through the modem.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import sqlalchemy as sa

from alerts import gsm7, messages, priority
from alerts.levels import Level
from service import phones, subscribers
from service.db import schema

OPT_OUT = {"BERHENTI", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "BATAL", "END", "QUIT"}
OPT_IN = {"MULAI", "START", "UNSTOP", "YES"}
REGISTER = {"DAFTAR", "REGISTER", "REG"}
INFO = {"INFO", "STATUS", "CEK"}
ENGLISH = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "START", "UNSTOP", "YES", "REGISTER", "STATUS"}


@dataclasses.dataclass(frozen=True)
class Place:
    """A place people can register for: a desa in a kecamatan, or a whole kecamatan (desa None)."""

    kecamatan: str
    desa: str | None

    def area(self) -> dict:
        """As a subscriber area."""
        return {"kecamatan": self.kecamatan, "desa": self.desa}


def _key(text) -> str:
    return " ".join(str(text or "").replace("-", " ").split()).casefold()


def known_places(conn) -> tuple[dict[str, Place], dict[str, Place]]:
    """Desa and kecamatan names the stations know (their own place and the areas they warn)."""
    desa, kecamatan = {}, {}
    for row in conn.execute(sa.select(schema.stations.c.kecamatan, schema.stations.c.desa, schema.stations.c.areas)):
        entries = [{"kecamatan": row.kecamatan, "desa": row.desa}] + list(row.areas or [])
        for entry in entries:
            if not entry.get("kecamatan"):
                continue
            kecamatan.setdefault(_key(entry["kecamatan"]), Place(entry["kecamatan"], None))
            if entry.get("desa"):
                desa.setdefault(_key(entry["desa"]), Place(entry["kecamatan"], entry["desa"]))
    return desa, kecamatan


def find_place(conn, text: str) -> Place | None:
    """The place named ``text``: a desa first, then a whole kecamatan; accepts ``Desa X`` / ``Kec. Y``."""
    desa, kecamatan = known_places(conn)
    name = _key(text)
    for prefix in ("desa ", "ds. ", "ds ", "kelurahan ", "kel. "):
        if name.startswith(prefix) and _key(name[len(prefix):]) in desa:
            return desa[_key(name[len(prefix):])]
    if name in desa:
        return desa[name]
    for prefix in ("kecamatan ", "kec. ", "kec "):
        if name.startswith(prefix):
            name = _key(name[len(prefix):])
    return kecamatan.get(name)


def _level_of(conn, area: dict) -> Level | None:
    """The highest current level of the stations warning ``area`` (None when no station does)."""
    best = None
    rows = conn.execute(sa.select(schema.stations.c.id, schema.stations.c.areas, schema.station_state.c.level)
                        .select_from(schema.stations.outerjoin(schema.station_state,
                                                               schema.station_state.c.station_id == schema.stations.c.id)))
    for row in rows:
        if subscribers.areas_overlap([area], row.areas or []):
            try:
                level = Level.parse(row.level or "normal")
            except ValueError:
                level = Level.NORMAL
            best = level if best is None else max(best, level)
    return best


def handle(conn, templates, zone, now: datetime, phone_raw: str, body: str, message_sid: str | None = None) -> str:
    """Apply one inbound SMS and return the reply text (GSM-7, at most one segment)."""
    if message_sid:
        done = conn.execute(sa.select(schema.inbound_messages.c.reply)
                            .where(schema.inbound_messages.c.provider_sid == message_sid)).first()
        if done is not None:
            return done.reply or ""
    phone, keyword, _, text = _respond(conn, templates, zone, now, phone_raw, body)
    values = {"received_at": now, "phone": phone, "body": (body or "")[:1600], "keyword": keyword[:16] or None,
              "reply": text, "provider_sid": message_sid}
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(schema.inbound_messages).values(**values))
    except sa.exc.IntegrityError:
        pass  # the same MessageSid, processed concurrently
    return text


def handle_once(conn, templates, zone, now: datetime, phone_raw: str, body: str,
                message_sid: str) -> tuple[str, str] | None:
    """Like ``handle`` (returns the reply and its language), but None when ``message_sid`` was handled already.

    The record is inserted first: a second transaction with the same id fails on the unique
    key (``sa.exc.IntegrityError``, the caller rolls back) before it changes anything.
    """
    t = schema.inbound_messages
    if conn.execute(sa.select(t.c.id).where(t.c.provider_sid == message_sid)).first() is not None:
        return None
    row_id = conn.execute(sa.insert(t).values(received_at=now, phone=str(phone_raw or "")[:20], body=(body or "")[:1600],
                                              provider_sid=message_sid).returning(t.c.id)).scalar_one()
    phone, keyword, language, text = _respond(conn, templates, zone, now, phone_raw, body)
    conn.execute(sa.update(t).where(t.c.id == row_id).values(phone=phone, keyword=keyword[:16] or None, reply=text))
    return text, language


REPLIES_PER_HOUR = 5  # per sender: an auto-responder answering our replies must not start an endless exchange


def queue_reply(conn, phone_raw: str, text: str, language: str, now: datetime) -> int | None:
    """Queue ``text`` to the sender as a ``reply`` notification; None (nothing queued) for a sender we cannot answer."""
    try:
        phone = phones.normalise(phone_raw)
    except phones.InvalidPhone:
        return None  # an alphanumeric sender (the network's own messages) or a short code
    n = schema.notifications
    recent = conn.execute(sa.select(sa.func.count()).select_from(n).where(
        n.c.phone == phone, n.c.kind == "reply", n.c.created_at > now - timedelta(hours=1))).scalar_one()
    if recent >= REPLIES_PER_HOUR or not text:
        return None
    person = subscribers.by_phone(conn, phone)
    return conn.execute(sa.insert(n).values(
        subscriber_id=None if person is None else person.id, phone=phone, kind="reply", body=text,
        language=language, status="pending",
        priority=priority.priority("reply"), attempts=0, created_at=now, updated_at=now,
    ).returning(n.c.id)).scalar_one()


def _respond(conn, templates, zone, now: datetime, phone_raw: str, body: str) -> tuple[str, str, str, str]:
    """Apply the keyword of ``body`` from ``phone_raw``; return (phone, keyword, language, reply text)."""
    try:
        phone = phones.normalise(phone_raw)
    except phones.InvalidPhone:
        phone = str(phone_raw or "")[:20]
    words = (body or "").strip().split(None, 1)
    keyword = words[0].upper().strip(".,!?:;") if words else ""
    rest = words[1].strip() if len(words) > 1 else ""
    person = subscribers.by_phone(conn, phone)
    language = person.language if person is not None else ("en" if keyword in ENGLISH else "id")
    desa_names, _ = known_places(conn)
    example = next(iter(sorted(p.desa for p in desa_names.values())), "Laskap") if desa_names else "Laskap"

    def reply(key: str, **context) -> str:
        return gsm7.truncate(messages.render(templates, f"reply.{key}", language, {"example": example, **context}))

    if keyword in OPT_OUT:
        if person is not None and not person.opted_out:
            subscribers.set_opted_out(conn, person.id, True, now)
        text = reply("opted_out")
    elif keyword in OPT_IN:
        if person is None:
            text = reply("not_registered")
        else:
            if person.opted_out:
                subscribers.set_opted_out(conn, person.id, False, now)
            text = reply("opted_in")
    elif keyword in REGISTER:
        place = find_place(conn, rest) if rest else None
        if place is None:
            text = reply("register_unknown", desa=rest[:30])
        else:
            _register(conn, person, phone, place, language, now)
            text = reply("registered", place=messages.area_name(place.area()))
    elif keyword in INFO:
        text = _info(conn, templates, language, zone, now, person, reply)
    else:
        text = reply("unknown")
    return phone, keyword, language, text


def _register(conn, person, phone: str, place: Place, language: str, now: datetime) -> None:
    if person is None:
        subscribers.create(conn, {"phone": phone, "areas": [place.area()], "language": language}, now, source="sms")
        return
    areas = list(person.areas or [])
    if not any(_key(a.get("kecamatan")) == _key(place.kecamatan) and _key(a.get("desa")) == _key(place.desa)
               for a in areas):
        areas.append(place.area())
    conn.execute(sa.update(schema.subscribers).where(schema.subscribers.c.id == person.id)
                 .values(areas=areas, opted_out=False, opted_out_at=None, updated_at=now))


def _info(conn, templates, language, zone, now, person, reply) -> str:
    if person is None:
        return reply("not_registered")
    lines = []
    for area in person.areas or []:
        level = _level_of(conn, area)
        if level is not None:
            lines.append(messages.fill(templates.get("reply.info_line", language),
                                       {"place": messages.area_name(area),
                                        "level": messages.level_word(templates, language, level.label)}))
    if not lines:
        return reply("info_none")
    context = messages.warning_context(templates, language, station={}, level="normal", metric="", value=None,
                                       at=now, zone=zone)
    return reply("info", status="; ".join(lines), time=context["time"], tz=context["tz"])
