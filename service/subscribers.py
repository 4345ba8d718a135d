"""Subscribers: residents and staff who receive SMS, their areas, CSV import and targeting.

Targeting (spec section 4): a station warns its ``areas`` (``{kecamatan, desa}``; no desa = the
whole kecamatan). A subscriber area matches a station area when the kecamatan is the same and
either side has no desa or both name the same desa, compared case-insensitively. So a
subscriber of a whole kecamatan gets every station of it, and a station warning a whole
kecamatan reaches every desa in it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa

from alerts.errors import PhoneTaken, SubscriberError
from service import phones
from service.audience import Audiences, name_key as _key
from service.db import schema

ROLES = ("resident", "staff")
LANGUAGES = ("id", "en")
CSV_COLUMNS = ("phone", "name", "language", "kecamatan", "desa")
MAX_AREAS = 50
MAX_IMPORT_ROWS = 50_000

t = schema.subscribers


def area_matches(a: Mapping, b: Mapping) -> bool:
    """True when area ``a`` and area ``b`` overlap (same kecamatan; desa equal or either whole)."""
    if _key(a.get("kecamatan")) != _key(b.get("kecamatan")) or not _key(a.get("kecamatan")):
        return False
    desa_a, desa_b = _key(a.get("desa")), _key(b.get("desa"))
    return not desa_a or not desa_b or desa_a == desa_b


def areas_overlap(these: Iterable[Mapping], those: Iterable[Mapping]) -> bool:
    """True when any area of ``these`` matches any area of ``those``."""
    those = list(those or [])
    return any(area_matches(a, b) for a in these or [] for b in those)


def clean_areas(areas, field: str = "areas") -> list[dict]:
    """Validate a list of ``{kecamatan, desa?}``; return it with trimmed names and ``desa`` None when absent."""
    if not isinstance(areas, list):
        raise SubscriberError(field, "must be a list of {kecamatan, desa}")
    if len(areas) > MAX_AREAS:
        raise SubscriberError(field, f"at most {MAX_AREAS} areas")
    out = []
    for i, area in enumerate(areas):
        if not isinstance(area, Mapping):
            raise SubscriberError(f"{field}.{i}", "must be an object {kecamatan, desa}")
        unknown = set(area) - {"kecamatan", "desa"}
        if unknown:
            raise SubscriberError(f"{field}.{i}.{sorted(unknown)[0]}", "unknown field")
        kecamatan = " ".join(str(area.get("kecamatan") or "").split())
        desa = " ".join(str(area.get("desa") or "").split()) or None
        if not kecamatan or not isinstance(area.get("kecamatan"), str):
            raise SubscriberError(f"{field}.{i}.kecamatan", "is required")
        if len(kecamatan) > 120 or (desa and len(desa) > 120):
            raise SubscriberError(f"{field}.{i}", "names are at most 120 characters")
        if area.get("desa") is not None and not isinstance(area.get("desa"), str):
            raise SubscriberError(f"{field}.{i}.desa", "must be a string or null")
        entry = {"kecamatan": kecamatan, "desa": desa}
        if not any(area_matches(entry, o) and _key(entry["desa"]) == _key(o["desa"]) for o in out):
            out.append(entry)
    return out


def clean(data: Mapping, *, partial: bool = False) -> dict:
    """Validate subscriber fields (``phone``, ``name``, ``language``, ``role``, ``areas``); raise SubscriberError."""
    out: dict = {}
    if "phone" in data or not partial:
        try:
            out["phone"] = phones.normalise(data.get("phone"))
        except phones.InvalidPhone as exc:
            raise SubscriberError("phone", str(exc)) from None
    if "name" in data:
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise SubscriberError("name", "must be a string")
        name = " ".join((name or "").split()) or None
        if name and len(name) > 200:
            raise SubscriberError("name", "at most 200 characters")
        out["name"] = name
    if "language" in data or not partial:
        raw = data.get("language") or "id"
        language = raw.strip().lower() if isinstance(raw, str) else None
        if language not in LANGUAGES:
            raise SubscriberError("language", f"must be one of {', '.join(LANGUAGES)}")
        out["language"] = language
    if "role" in data or not partial:
        role = data.get("role") or "resident"
        if role not in ROLES:
            raise SubscriberError("role", f"must be one of {', '.join(ROLES)}")
        out["role"] = role
    if "areas" in data or not partial:
        out["areas"] = clean_areas(data.get("areas") if "areas" in data else [])
    return out


def to_json(row, *, with_phone: bool = True) -> dict:
    """The API view of a subscribers row (``phone`` only for operators and admins)."""
    m = row._mapping if hasattr(row, "_mapping") else row
    out = {
        "id": m["id"],
        "phone": m["phone"] if with_phone else None,
        "name": m["name"],
        "language": m["language"],
        "areas": m["areas"] or [],
        "role": m["role"],
        "opted_out": bool(m["opted_out"]),
        "opted_out_at": m["opted_out_at"],
        "source": m["source"],
        "created_at": m["created_at"],
        "updated_at": m["updated_at"],
    }
    if not with_phone:
        out.pop("phone")
    return out


def get(conn, subscriber_id: int):
    """The subscribers row ``subscriber_id``, or None."""
    return conn.execute(sa.select(t).where(t.c.id == subscriber_id)).first()


def by_phone(conn, phone: str):
    """The subscribers row with E.164 ``phone``, or None."""
    return conn.execute(sa.select(t).where(t.c.phone == phone)).first()


def create(conn, data: Mapping, now: datetime, source: str = "api"):
    """Insert a validated subscriber; raise PhoneTaken when the phone is registered. Returns the row."""
    values = clean(data)
    existing = by_phone(conn, values["phone"])
    if existing is not None:
        raise PhoneTaken(values["phone"], existing.id)
    values.setdefault("name", None)
    try:
        with conn.begin_nested():
            new_id = conn.execute(
                sa.insert(t).values(**values, opted_out=False, source=source, created_at=now, updated_at=now)
                .returning(t.c.id)
            ).scalar_one()
    except sa.exc.IntegrityError:
        raise PhoneTaken(values["phone"]) from None  # registered concurrently
    return get(conn, new_id)


def update(conn, subscriber_id: int, data: Mapping, now: datetime):
    """Change some fields of a subscriber; return the new row, or None when there is none."""
    if get(conn, subscriber_id) is None:
        return None
    if "opted_out" in data:
        raise SubscriberError("opted_out", "is read-only: it is set by the SMS keywords BERHENTI/MULAI")
    values = clean(data, partial=True)
    if "phone" in values:
        other = by_phone(conn, values["phone"])
        if other is not None and other.id != subscriber_id:
            raise PhoneTaken(values["phone"], other.id)
    if values:
        try:
            with conn.begin_nested():
                conn.execute(sa.update(t).where(t.c.id == subscriber_id).values(**values, updated_at=now))
        except sa.exc.IntegrityError:
            raise PhoneTaken(values.get("phone", "")) from None
    return get(conn, subscriber_id)


def delete(conn, subscriber_id: int) -> bool:
    """Remove a subscriber (their past notifications stay); False when there was none."""
    return conn.execute(sa.delete(t).where(t.c.id == subscriber_id)).rowcount > 0


def set_opted_out(conn, subscriber_id: int, opted_out: bool, now: datetime) -> None:
    """Record an opt-out (BERHENTI, error 21610) or an opt-in (MULAI)."""
    conn.execute(
        sa.update(t).where(t.c.id == subscriber_id)
        .values(opted_out=opted_out, opted_out_at=now if opted_out else None, updated_at=now)
    )


def import_csv(conn, text: str, now: datetime) -> dict:
    """Import ``phone,name,language,kecamatan,desa`` rows (optional ``role``); report per-row errors.

    Valid rows are inserted; a row whose phone is already registered (or repeats an earlier
    row) is an error, as in ``POST /subscribers``. Row numbers count the header as row 1.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # the BOM spreadsheets write
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel
    try:
        # newline="": the csv module sees the file's own line ends (old Mac \r included), as it needs to.
        rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:  # e.g. a quote never closed: a 422 naming the file, not a crash
        raise SubscriberError("file", f"is not readable as CSV ({exc})") from None
    reader = iter(rows)
    header = next(reader, None)
    if header is None:
        raise SubscriberError("file", "is empty; the first line must be phone,name,language,kecamatan,desa")
    header = [h.strip().lower() for h in header]
    missing = [c for c in ("phone", "kecamatan") if c not in header]
    if missing:
        raise SubscriberError("file", f"the header lacks {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})")
    created, errors, seen = [], [], {}
    for number, cells in enumerate(reader, start=2):
        if number - 1 > MAX_IMPORT_ROWS:
            errors.append({"row": number, "field": "file", "message": f"more than {MAX_IMPORT_ROWS} rows; the rest was ignored"})
            break
        if not any(c.strip() for c in cells):
            continue
        row = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
        data = {
            "phone": row.get("phone", ""),
            "name": row.get("name") or None,
            "language": row.get("language") or "id",
            "role": row.get("role") or "resident",
            "areas": [{"kecamatan": row.get("kecamatan", ""), "desa": row.get("desa") or None}],
        }
        try:
            values = clean(data)
            if values["phone"] in seen:
                raise SubscriberError("phone", f"repeats row {seen[values['phone']]}")
            seen[values["phone"]] = number
            subscriber = create(conn, values, now, source="csv")
            created.append(subscriber.id)
        except SubscriberError as exc:
            errors.append({"row": number, "field": exc.field, "message": exc.message})
    return {"created": len(created), "ids": created, "errors": errors}


def audience(conn, station_areas: list[Mapping] | None, *, residents: bool, staff: bool,
             staff_match_areas: bool = False) -> list:
    """Subscribers (not opted out) to tell about a station with ``station_areas``, ordered by id.

    Residents must match an area; staff get everything unless ``staff_match_areas``.
    ``station_areas`` None means every area (operator broadcast to all). Read afresh: the
    dispatcher keeps a ``service.audience.Audiences`` between expansions instead.
    """
    return Audiences().audience(conn, station_areas, residents=residents, staff=staff,
                                staff_match_areas=staff_match_areas)
