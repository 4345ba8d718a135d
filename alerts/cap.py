"""CAP 1.2 (OASIS Common Alerting Protocol) messages and an Atom feed, built from an alert's events.

Pure and deterministic: the same alert, events and station always give the same XML, so
nothing needs storing. Each state-changing event (raised, escalated, deescalated, cleared)
is one CAP message: the first an ``Alert``, later ones an ``Update`` referencing every
earlier message, and ``cleared`` a ``Cancel``. One ``info`` per language (id, en).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
SENDER = "bpbd@luwutimurkab.go.id"
SENDER_NAME = "BPBD Kabupaten Luwu Timur"
CAP_EVENT_TYPES = ("raised", "escalated", "deescalated", "cleared")
PUBLIC_KINDS = ("water_level", "rainfall")
CIRCLE_RADIUS_KM = 5.0
WARNING_EXPIRES = timedelta(hours=6)
CANCEL_EXPIRES = timedelta(hours=1)

# level -> (urgency, severity, certainty, responseType); "cleared" is the all-clear.
LEVEL_MAP = {
    "awas": ("Immediate", "Extreme", "Observed", "Evacuate"),
    "siaga": ("Expected", "Severe", "Observed", "Prepare"),
    "waspada": ("Future", "Moderate", "Observed", "Monitor"),
    "cleared": ("Past", "Minor", "Observed", "AllClear"),
}

EVENTS = {
    "water_level": {"id": "Banjir", "en": "River flood"},
    "rainfall": {"id": "Hujan lebat", "en": "Heavy rain"},
}
METRIC_TEXT = {
    "water_level": {"id": "tinggi muka air", "en": "water level", "unit": "m"},
    "rainfall": {"id": "curah hujan", "en": "rainfall", "unit": "mm"},
}
INSTRUCTIONS = {
    "awas": {"id": "Segera mengungsi ke tempat yang lebih tinggi dan ikuti arahan petugas. Darurat: 112.",
             "en": "Evacuate to higher ground now and follow officials' instructions. Emergency: 112."},
    "siaga": {"id": "Siapkan barang penting dan jalur evakuasi; bantu lansia dan anak-anak. Darurat: 112.",
              "en": "Prepare documents and an evacuation route; help the elderly and children. Emergency: 112."},
    "waspada": {"id": "Pantau kondisi sungai dan informasi BPBD. Darurat: 112.",
                "en": "Watch the river and BPBD updates. Emergency: 112."},
    "cleared": {"id": "Kondisi kembali normal. Tetap waspada dan ikuti informasi BPBD.",
                "en": "Conditions are back to normal. Stay alert and follow BPBD updates."},
}


@dataclasses.dataclass(frozen=True)
class CapStation:
    """What a CAP message says about the station."""

    id: str
    name: str
    river: str | None = None
    lat: float | None = None
    lon: float | None = None
    areas: Sequence[Mapping] = ()


@dataclasses.dataclass(frozen=True)
class CapAlert:
    """The alert (one episode at one station, of one kind)."""

    id: int
    station_id: str
    kind: str
    level: str
    state: str
    opened_at: datetime
    exercise: bool = False


@dataclasses.dataclass(frozen=True)
class CapEvent:
    """One row of alert_events."""

    id: int
    type: str
    level: str
    at: datetime
    recorded_at: datetime
    reading: Mapping | None = None


@dataclasses.dataclass(frozen=True)
class CapMessage:
    """One generated CAP message."""

    identifier: str
    sender: str
    sent: datetime
    msg_type: str
    level: str
    headline: str
    xml: str

    @property
    def reference(self) -> str:
        """This message as a CAP ``references`` triple: ``sender,identifier,sent``."""
        return f"{self.sender},{self.identifier},{cap_time(self.sent)}"


def cap_time(value: datetime) -> str:
    """A CAP dateTime: whole seconds with an explicit offset (CAP forbids ``Z``)."""
    value = value.astimezone(timezone.utc).replace(microsecond=0)
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def atom_time(value: datetime) -> str:
    """An Atom (RFC 3339) UTC time."""
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def identifier_for(alert_id: int, event_id: int) -> str:
    """The CAP identifier of the message for one event of one alert."""
    return f"bpbd-lutim-{alert_id}-{event_id}"


def area_names(areas: Sequence[Mapping]) -> list[str]:
    """One short description per warned place: ``Laskap, Malili`` or ``Kec. Malili``."""
    names = []
    for area in areas:
        kecamatan, desa = area.get("kecamatan"), area.get("desa")
        names.append(f"{desa}, {kecamatan}" if desa else f"Kec. {kecamatan}")
    return names


def _local(value: datetime, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    label = {"Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Jayapura": "WIT"}.get(str(tz), local.strftime("%Z"))
    return f"{local:%d-%m-%Y %H:%M} {label}"


def _reading_text(reading: Mapping | None, kind: str, lang: str) -> str:
    if not reading or not isinstance(reading.get("value"), (int, float)):
        return ""
    metric = METRIC_TEXT.get(str(reading.get("metric")), METRIC_TEXT.get(kind, METRIC_TEXT["water_level"]))
    window = reading.get("window")
    window_text = f" ({window})" if isinstance(window, str) and len(window) <= 8 else ""
    return f"{metric[lang].capitalize()}{window_text} {float(reading['value']):g} {metric['unit']}"


def _texts(alert: CapAlert, event: CapEvent, station: CapStation, tz: ZoneInfo) -> dict[str, dict[str, str]]:
    """Headline, description and instruction in each language."""
    place = station.name + (f" ({station.river})" if station.river else "")
    areas = "; ".join(area_names(station.areas)) or station.name
    when = _local(event.at, tz)
    cleared = event.type == "cleared"
    key = "cleared" if cleared else event.level
    out = {}
    for lang in ("id", "en"):
        reading = _reading_text(event.reading, alert.kind, lang)
        if cleared:
            headline = (f"Peringatan {EVENTS[alert.kind]['id'].lower()} berakhir: {station.name}" if lang == "id"
                        else f"{EVENTS[alert.kind]['en']} warning ended: {station.name}")
            description = (f"Kondisi di {place} kembali normal pada {when}." if lang == "id"
                           else f"Conditions at {place} returned to normal at {when}.")
        else:
            level = event.level.upper()
            verb = {"raised": ("dinyatakan", "declared"), "escalated": ("naik menjadi", "raised to"),
                    "deescalated": ("turun menjadi", "lowered to")}.get(event.type, ("", ""))
            headline = (f"{level} {EVENTS[alert.kind]['id'].lower()}: {station.name}" if lang == "id"
                        else f"{level} {EVENTS[alert.kind]['en'].lower()}: {station.name}")
            description = (f"Status {verb[0]} {level} di {place} pada {when}." if lang == "id"
                           else f"Status {verb[1]} {level} at {place} at {when}.")
        if reading:
            description += f" {reading}."
        description += f" Wilayah: {areas}." if lang == "id" else f" Areas: {areas}."
        out[lang] = {"headline": headline[:160], "description": description,
                     "instruction": INSTRUCTIONS.get(key, INSTRUCTIONS["waspada"])[lang]}
    return out


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _message_xml(alert: CapAlert, event: CapEvent, station: CapStation, *, identifier: str, sender: str,
                 msg_type: str, references: Sequence[str], tz: ZoneInfo, web: str | None) -> tuple[str, str]:
    """The XML of one message and its Indonesian headline."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(event.recorded_at))
    _sub(root, "status", "Exercise" if alert.exercise else "Actual")
    _sub(root, "msgType", msg_type)
    _sub(root, "source", f"EWS Luwu Timur, station {station.id}")
    _sub(root, "scope", "Public")
    if alert.exercise:
        _sub(root, "note", "Latihan / exercise: bukan peringatan sungguhan.")
    if references:
        _sub(root, "references", " ".join(references))
    _sub(root, "incidents", f"bpbd-lutim-{alert.id}")
    key = "cleared" if event.type == "cleared" else event.level
    urgency, severity, certainty, response = LEVEL_MAP.get(key, LEVEL_MAP["waspada"])
    sent = event.recorded_at
    expires = sent + (CANCEL_EXPIRES if event.type == "cleared" else WARNING_EXPIRES)
    texts = _texts(alert, event, station, tz)
    for lang in ("id", "en"):
        info = _sub(root, "info")
        _sub(info, "language", lang)
        _sub(info, "category", "Met")  # CAP's Met covers flood as well as heavy rain
        _sub(info, "event", EVENTS[alert.kind][lang])
        _sub(info, "responseType", response)
        _sub(info, "urgency", urgency)
        _sub(info, "severity", severity)
        _sub(info, "certainty", certainty)
        code = _sub(info, "eventCode")
        _sub(code, "valueName", "BNPB_LEVEL")
        _sub(code, "value", "normal" if event.type == "cleared" else event.level)
        _sub(info, "effective", cap_time(sent))
        _sub(info, "onset", cap_time(event.at))
        _sub(info, "expires", cap_time(expires))
        _sub(info, "senderName", SENDER_NAME)
        _sub(info, "headline", texts[lang]["headline"])
        _sub(info, "description", texts[lang]["description"])
        _sub(info, "instruction", texts[lang]["instruction"])
        if web:
            _sub(info, "web", web)
        _sub(info, "contact", "BPBD Luwu Timur / Darurat 112")
        parameter = _sub(info, "parameter")
        _sub(parameter, "valueName", "station_id")
        _sub(parameter, "value", station.id)
        names = area_names(station.areas) or [station.name]
        for name in names:
            area = _sub(info, "area")
            _sub(area, "areaDesc", name)
            if station.lat is not None and station.lon is not None:
                _sub(area, "circle", f"{station.lat:.6f},{station.lon:.6f} {CIRCLE_RADIUS_KM:g}")
    xml = ET.tostring(root, encoding="unicode", default_namespace=CAP_NS)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n", texts["id"]["headline"]


def cap_messages(alert: CapAlert, events: Sequence[CapEvent], station: CapStation, *, sender: str = SENDER,
                 tz: str = "Asia/Makassar", web: str | None = None) -> list[CapMessage]:
    """Every CAP message of ``alert``, oldest first: one per state-changing event."""
    if alert.kind not in PUBLIC_KINDS:
        raise ValueError(f"{alert.kind} alerts are for staff only and have no CAP message")
    zone = ZoneInfo(tz)
    messages: list[CapMessage] = []
    for event in sorted((e for e in events if e.type in CAP_EVENT_TYPES), key=lambda e: (e.recorded_at, e.id)):
        if not messages:
            msg_type = "Cancel" if event.type == "cleared" else "Alert"
        else:
            msg_type = "Cancel" if event.type == "cleared" else "Update"
        identifier = identifier_for(alert.id, event.id)
        xml, headline = _message_xml(alert, event, station, identifier=identifier, sender=sender,
                                     msg_type=msg_type, references=[m.reference for m in messages],
                                     tz=zone, web=web)
        messages.append(CapMessage(identifier=identifier, sender=sender, sent=event.recorded_at,
                                   msg_type=msg_type, level=event.level, headline=headline, xml=xml))
    return messages


@dataclasses.dataclass(frozen=True)
class FeedEntry:
    """One active alert in the Atom feed: its latest CAP message and where to fetch it."""

    message: CapMessage
    url: str
    summary: str = ""


def atom_feed(entries: Sequence[FeedEntry], *, feed_url: str, updated: datetime,
              title: str = "BPBD Luwu Timur: peringatan dini banjir / flood early warnings") -> str:
    """An Atom feed of CAP messages (one entry per active alert, linking to its CAP XML)."""
    # Plain tags with an xmlns attribute: ElementTree's default_namespace refuses unqualified attributes.
    feed = ET.Element("feed", {"xmlns": ATOM_NS})

    def sub(parent, tag, text=None, **attrs):
        element = ET.SubElement(parent, tag, attrs)
        if text is not None:
            element.text = text
        return element

    sub(feed, "id", feed_url)
    sub(feed, "title", title)
    newest = max([updated] + [e.message.sent for e in entries]) if entries else updated
    sub(feed, "updated", atom_time(newest))
    author = sub(feed, "author")
    sub(author, "name", SENDER_NAME)
    sub(author, "email", SENDER)
    sub(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    for entry in entries:
        item = sub(feed, "entry")
        sub(item, "id", f"urn:cap:{entry.message.sender}:{entry.message.identifier}")
        sub(item, "title", entry.message.headline)
        sub(item, "updated", atom_time(entry.message.sent))
        sub(item, "link", rel="alternate", href=entry.url, type=CAP_MEDIA_TYPE)
        if entry.summary:
            sub(item, "summary", entry.summary)
    xml = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n"
