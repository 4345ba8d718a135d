"""CAP 1.2 (OASIS Common Alerting Protocol) messages and an Atom feed of them.

Pure: ``build_message`` writes one message's XML from the alert, the event whose state it
carries, the station and the issuer's ``CapProfile``. When a message is due and of what
type (Alert, Update, Cancel, the renewal before expiry) is ``alerts.cap_chain``; the service
stores each issued message and serves it unchanged (``service/cap.py``). One ``info`` per
language (id, en). Times are local with their offset (WITA ``+08:00``), as BMKG publishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from alerts.model import PUBLIC_ALERT_KINDS
from alerts.times import rfc3339

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
DEFAULT_SENDER = "bpbd@luwutimurkab.go.id"
SENDER_NAME = "BPBD Kabupaten Luwu Timur"
DEFAULT_RADIUS_KM = 5.0
DEFAULT_EXPIRES_S = 21600
MIN_EXPIRES_S = 60
ZONE_LABELS = {"Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Jayapura": "WIT"}

# level -> (urgency, severity, certainty, responseType); "cleared" is the all-clear (Cancel).
LEVEL_MAP = {
    "awas": ("Immediate", "Extreme", "Observed", "Evacuate"),
    "siaga": ("Expected", "Severe", "Observed", "Prepare"),
    "waspada": ("Future", "Moderate", "Observed", "Monitor"),
    "cleared": ("Past", "Minor", "Observed", "AllClear"),
    # A Cancel that is not a return to normal (closed by hand, spec section 10): it must not tell people it is safe.
    "withdrawn": ("Past", "Unknown", "Unknown", "Monitor"),
}

EVENTS = {
    "water_level": {"id": "Banjir", "en": "River flood"},
    "rainfall": {"id": "Hujan lebat", "en": "Heavy rain"},
    "upstream": {"id": "Banjir kiriman", "en": "Flood wave from upstream"},
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
    "withdrawn": {"id": "Tetap waspada dan ikuti informasi BPBD. Darurat: 112.",
                  "en": "Stay alert and follow BPBD updates. Emergency: 112."},
}


@dataclasses.dataclass(frozen=True)
class CapProfile:
    """Who issues the messages and how (``EWS_CAP_SENDER``, ``EWS_CAP_OID``, ``EWS_CAP_EXPIRES_S``, ``EWS_TIMEZONE``)."""

    sender: str = DEFAULT_SENDER
    sender_name: str = SENDER_NAME
    timezone: str = "Asia/Makassar"
    oid: str | None = None  # the WMO register's OID of the alerting authority; None: our own identifiers
    expires_s: int = DEFAULT_EXPIRES_S
    web: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The zone CAP times are written in."""
        return ZoneInfo(self.timezone)


@dataclasses.dataclass(frozen=True)
class CapStation:
    """What a CAP message says about the station."""

    id: str
    name: str
    river: str | None = None
    lat: float | None = None
    lon: float | None = None
    areas: Sequence[Mapping] = ()  # {kecamatan, desa?, polygon?: [[lat, lon], ...]}
    cap_radius_km: float = DEFAULT_RADIUS_KM


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
    """One issued CAP message."""

    identifier: str
    sender: str
    sent: datetime
    expires: datetime
    msg_type: str
    headline: str
    xml: str

    def reference(self, tz: ZoneInfo) -> str:
        """This message as a CAP ``references`` entry: ``sender,identifier,sent``."""
        return reference(self.sender, self.identifier, self.sent, tz)


def cap_time(value: datetime, tz: ZoneInfo) -> str:
    """A CAP dateTime: whole seconds, local time with its offset (``2026-11-30T14:05:00+08:00``)."""
    return value.astimezone(tz).replace(microsecond=0).isoformat()


def reference(sender: str, identifier: str, sent: datetime, tz: ZoneInfo) -> str:
    """A ``references`` entry, ``sent`` written exactly as in the referenced message."""
    return f"{sender},{identifier},{cap_time(sent, tz)}"


def atom_time(value: datetime) -> str:
    """An Atom (RFC 3339) UTC time, to the second."""
    return rfc3339(value, whole_seconds=True)


def identifier_for(profile: CapProfile, *, alert_id: int, event_id: int, number: int, seq: int, sent: datetime,
                   first_for_event: bool) -> str:
    """The message's ``identifier``.

    With an OID (the WMO Register of Alerting Authorities): ``{oid}.{YYYY}.{MM}.{DD}.{HH}.{NN}.{seq}``
    in the sender's local time, ``seq`` unique per sender. Without: ``bpbd-lutim-{alert}-{event}``,
    and ``-{number}`` after it for a later message carrying the same event (a renewal).
    """
    if profile.oid:
        return f"{profile.oid}.{sent.astimezone(profile.tz):%Y.%m.%d.%H.%M}.{seq}"
    base = f"bpbd-lutim-{alert_id}-{event_id}"
    return base if first_for_event else f"{base}-{number}"


def area_names(areas: Sequence[Mapping]) -> list[str]:
    """One short description per warned place: ``Laskap, Malili`` or ``Kec. Malili``."""
    names = []
    for area in areas:
        kecamatan, desa = area.get("kecamatan"), area.get("desa")
        names.append(f"{desa}, {kecamatan}" if desa else f"Kec. {kecamatan}")
    return names


def polygon_text(points: Sequence[Sequence[float]]) -> str:
    """A CAP polygon: ``lat,lon`` pairs separated by spaces, at most 6 decimals (Google's limit)."""
    return " ".join(f"{float(lat):.6f},{float(lon):.6f}" for lat, lon in points)


def _local(value: datetime, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    return f"{local:%d-%m-%Y %H:%M} {ZONE_LABELS.get(str(tz), local.strftime('%Z'))}"


def _reading_text(reading: Mapping | None, kind: str, lang: str) -> str:
    if not reading or not isinstance(reading.get("value"), (int, float)):
        return ""
    metric = METRIC_TEXT.get(str(reading.get("metric")), METRIC_TEXT.get(kind, METRIC_TEXT["water_level"]))
    window = reading.get("window")
    window_text = f" ({window})" if isinstance(window, str) and len(window) <= 8 else ""
    return f"{metric[lang].capitalize()}{window_text} {float(reading['value']):g} {metric['unit']}"


def _state_key(msg_type: str, event: CapEvent) -> str:
    """What a message says: a level, ``cleared`` (back to normal) or ``withdrawn`` (a Cancel that is not)."""
    if msg_type != "Cancel":
        return event.level
    return "cleared" if event.type == "cleared" else "withdrawn"


def _texts(alert: CapAlert, event: CapEvent, station: CapStation, tz: ZoneInfo, key: str) -> dict[str, dict]:
    """Headline, description and instruction in each language."""
    place = station.name + (f" ({station.river})" if station.river else "")
    areas = "; ".join(area_names(station.areas)) or station.name
    when = _local(event.at, tz)
    name = EVENTS.get(alert.kind, EVENTS["water_level"])
    level = event.level.upper()
    verb = {"raised": ("dinyatakan", "declared"), "escalated": ("naik menjadi", "raised to"),
            "deescalated": ("turun menjadi", "lowered to")}.get(event.type, ("tetap", "remains"))
    if key == "cleared":
        lines = {"id": (f"Peringatan {name['id'].lower()} berakhir: {station.name}",
                        f"Kondisi di {place} kembali normal pada {when}."),
                 "en": (f"{name['en']} warning ended: {station.name}",
                        f"Conditions at {place} returned to normal at {when}.")}
    elif key == "withdrawn":
        lines = {"id": (f"Peringatan {name['id'].lower()} dicabut: {station.name}",
                        f"Peringatan untuk {place} dicabut oleh BPBD (status terakhir {level})."),
                 "en": (f"{name['en']} warning withdrawn: {station.name}",
                        f"The warning for {place} was withdrawn by BPBD (last status {level}).")}
    else:
        lines = {"id": (f"{level} {name['id'].lower()}: {station.name}",
                        f"Status {verb[0]} {level} di {place} pada {when}."),
                 "en": (f"{level} {name['en'].lower()}: {station.name}",
                        f"Status {verb[1]} {level} at {place} at {when}.")}
    wave = _wave_text(alert, event, station, tz) if key not in ("cleared", "withdrawn") else None
    out = {}
    for lang in ("id", "en"):
        headline, description = lines[lang]
        if wave is not None:
            description += f" {wave[lang]}"
        reading = _reading_text(event.reading, alert.kind, lang)
        if reading and key != "withdrawn":
            description += f" {reading}." if wave is None else f" ({reading} di hulu)." if lang == "id" else f" ({reading} upstream)."
        description += f" Wilayah: {areas}." if lang == "id" else f" Areas: {areas}."
        out[lang] = {"headline": headline[:140], "description": description,
                     "instruction": INSTRUCTIONS.get(key, INSTRUCTIONS["waspada"])[lang]}
    return out


def eta_of(alert: CapAlert, event: CapEvent) -> datetime | None:
    """When an upstream alert's wave is expected at the station (its ``onset``); None for other kinds."""
    text = (event.reading or {}).get("eta") if alert.kind == "upstream" else None
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _wave_text(alert: CapAlert, event: CapEvent, station: CapStation, tz: ZoneInfo) -> dict[str, str] | None:
    """Where an upstream alert's wave comes from and when it arrives, in each language."""
    eta = eta_of(alert, event)
    if eta is None:
        return None
    reading = event.reading or {}
    source = str(reading.get("source_name") or reading.get("source_station_id") or "hulu")
    when = _local(eta, tz)
    return {"id": f"Banjir kiriman dari {source} diperkirakan tiba di {station.name} pada {when}.",
            "en": f"A flood wave from {source} is expected at {station.name} at {when}."}


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _areas(info: ET.Element, station: CapStation) -> None:
    """One ``area`` per warned place: its polygon when the registry has one, else a circle around the station."""
    places = list(station.areas) or [{"kecamatan": None, "desa": None}]
    names = area_names(station.areas) or [station.name]
    for place, name in zip(places, names):
        area = _sub(info, "area")
        _sub(area, "areaDesc", name[:100])
        if place.get("polygon"):
            _sub(area, "polygon", polygon_text(place["polygon"]))
        elif station.lat is not None and station.lon is not None:
            _sub(area, "circle", f"{station.lat:.6f},{station.lon:.6f} {station.cap_radius_km:g}")


def _info(root: ET.Element, lang: str, alert: CapAlert, event: CapEvent, station: CapStation,
          profile: CapProfile, texts: dict, *, sent: datetime, expires: datetime, key: str) -> None:
    tz = profile.tz
    urgency, severity, certainty, response = LEVEL_MAP.get(key, LEVEL_MAP["waspada"])
    info = _sub(root, "info")
    _sub(info, "language", lang)
    _sub(info, "category", "Met")  # CAP's Met covers flood as well as heavy rain
    _sub(info, "event", EVENTS.get(alert.kind, EVENTS["water_level"])[lang])
    _sub(info, "responseType", response)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", certainty)
    code = _sub(info, "eventCode")
    _sub(code, "valueName", "BNPB_LEVEL")
    _sub(code, "value", "normal" if key == "cleared" else event.level)
    _sub(info, "effective", cap_time(sent, tz))
    _sub(info, "onset", cap_time(eta_of(alert, event) or event.at, tz))  # a wave from upstream: when it arrives
    _sub(info, "expires", cap_time(expires, tz))
    _sub(info, "senderName", profile.sender_name)
    for field in ("headline", "description", "instruction"):
        _sub(info, field, texts[lang][field])
    if profile.web:
        _sub(info, "web", profile.web)
    _sub(info, "contact", "BPBD Luwu Timur / Darurat 112")
    parameter = _sub(info, "parameter")
    _sub(parameter, "valueName", "station_id")
    _sub(parameter, "value", station.id)
    _areas(info, station)


def build_message(alert: CapAlert, event: CapEvent, station: CapStation, profile: CapProfile, *, identifier: str,
                  msg_type: str, sent: datetime, expires: datetime, references: Sequence[str] = ()) -> CapMessage:
    """One CAP message carrying the state of ``event`` (a ``Cancel`` ends the alert)."""
    if alert.kind not in EVENTS or alert.kind not in PUBLIC_ALERT_KINDS:
        raise ValueError(f"{alert.kind} alerts are for staff only and have no CAP message")
    key = _state_key(msg_type, event)
    tz = profile.tz
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", identifier)
    _sub(root, "sender", profile.sender)
    _sub(root, "sent", cap_time(sent, tz))
    _sub(root, "status", "Exercise" if alert.exercise else "Actual")
    _sub(root, "msgType", msg_type)
    _sub(root, "source", f"EWS Luwu Timur, station {station.id}")
    _sub(root, "scope", "Public")
    if alert.exercise:
        _sub(root, "note", "Latihan / exercise: bukan peringatan sungguhan.")
    if references:
        _sub(root, "references", " ".join(references))
    _sub(root, "incidents", f"bpbd-lutim-{alert.id}")
    texts = _texts(alert, event, station, tz, key)
    for lang in ("id", "en"):
        _info(root, lang, alert, event, station, profile, texts, sent=sent, expires=expires, key=key)
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode", default_namespace=CAP_NS) + "\n"
    return CapMessage(identifier=identifier, sender=profile.sender, sent=sent, expires=expires, msg_type=msg_type,
                      headline=texts["id"]["headline"], xml=xml)


@dataclasses.dataclass(frozen=True)
class FeedEntry:
    """One alert in the Atom feed: its latest CAP message and where to fetch it."""

    identifier: str
    sender: str
    sent: datetime
    headline: str
    url: str
    summary: str = ""


def atom_feed(entries: Sequence[FeedEntry], *, feed_url: str, updated: datetime, author_email: str = DEFAULT_SENDER,
              title: str = "BPBD Luwu Timur: peringatan dini banjir / flood early warnings") -> str:
    """An Atom feed of CAP messages (one entry per alert, linking to its CAP XML)."""
    # Plain tags with an xmlns attribute: ElementTree's default_namespace refuses unqualified attributes.
    feed = ET.Element("feed", {"xmlns": ATOM_NS})

    def sub(parent, tag, text=None, **attrs):
        element = ET.SubElement(parent, tag, attrs)
        if text is not None:
            element.text = text
        return element

    sub(feed, "id", feed_url)
    sub(feed, "title", title)
    sub(feed, "updated", atom_time(max([updated] + [e.sent for e in entries])))
    author = sub(feed, "author")
    sub(author, "name", SENDER_NAME)
    if "@" in author_email:  # a CAP sender need not be an e-mail address; Atom's email must be one
        sub(author, "email", author_email)
    sub(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
    for entry in entries:
        item = sub(feed, "entry")
        sub(item, "id", f"urn:cap:{entry.sender}:{entry.identifier}")
        sub(item, "title", entry.headline)
        sub(item, "updated", atom_time(entry.sent))
        sub(item, "link", rel="alternate", href=entry.url, type=CAP_MEDIA_TYPE)
        if entry.summary:
            sub(item, "summary", entry.summary)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(feed, encoding="unicode") + "\n"
