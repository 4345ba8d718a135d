"""``/api/v1/stations``: the station registry (read: viewer; write: admin)."""

from __future__ import annotations

import functools
import json

import sqlalchemy as sa
from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts.areas import polygon_problem
from alerts.cap import DEFAULT_RADIUS_KM
from alerts.rules import RulesError, rules_to_doc
from alerts.segment import segment_problem
from alerts.sirens import siren_problems
from alerts.station_rules import replace_rules
from alerts.upstream import network_from_stations, network_problems
from config.templates import default_templates
from service import audit, maintenance
from service.sirens.state import siren_owners
from service.station_rules import default_rules_doc, new_station_rules_doc
from service.db import schema
from service.http import changing, reading, services
from service.http.answers import SharedAnswers, query_string, respond
from service.http.auth import current_actor
from service.http.errors import VALIDATION_TYPE, Problem
from service.http.pagination import keyset_page, page_schema
from service.http.routes import operation
from service.http.station_schemas import (
    EDITABLE,
    STATION_ID_RE,
    StationCreateSchema,
    StationListArgs,
    StationPatchSchema,
    StationSchema,
)

blp = Blueprint("stations", __name__, url_prefix="/api/v1/stations", description="Station registry")

# ---------------------------------------------------------------- helpers

def station_json(row, state=None, window: dict | None = None) -> dict:
    """The API view of a stations row, its station_state row (if any) and its maintenance window in force."""
    m = row._mapping
    out = {k: m[k] for k in ("id",) + EDITABLE + ("created_at", "updated_at")}
    out["areas"] = [_area_json(a) for a in (m["areas"] or [])]
    out["sirens"] = list(m["sirens"] or [])
    if state is None:
        out["status"] = {"level": "normal", "online": False, "last_seen": None, "latest": {}}
    else:
        s = state._mapping
        out["status"] = {"level": s["level"], "online": bool(s["online"]), "last_seen": s["last_seen"],
                         "latest": s["latest"] or {}}
    if window is not None:
        out["status"]["maintenance"] = window
    return out


def _area_json(area: dict) -> dict:
    out = {"kecamatan": area.get("kecamatan"), "desa": area.get("desa")}
    if area.get("polygon"):
        out["polygon"] = area["polygon"]
    return out


def load_station(conn, station_id: str) -> dict:
    """The station ``station_id`` with its status; 404 problem when there is none."""
    if not STATION_ID_RE.match(station_id):
        raise Problem(404, f"No station {station_id[:64]!r}.")
    s, st = schema.stations, schema.station_state
    row = conn.execute(sa.select(s).where(s.c.id == station_id)).first()
    if row is None:
        raise Problem(404, f"No station {station_id!r}.")
    state = conn.execute(sa.select(st).where(st.c.station_id == station_id)).first()
    return station_json(row, state, maintenance.status_of(conn, station_id, services().clock()))


def _validation(errors: list[dict]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Problem(422, detail, type=VALIDATION_TYPE, title="Validation failed", errors=errors)


def check_station(doc: dict) -> list[dict]:
    """Rules that span fields; returns ``[{field, message}]`` (empty when the station is consistent)."""
    errors = []
    metrics = doc.get("metrics") or []
    if len(set(metrics)) != len(metrics):
        errors.append({"field": "metrics", "message": "lists a metric twice"})
    if "rainfall" in metrics and "rain_tips" in metrics:
        errors.append({"field": "metrics", "message": "a station sends rainfall or rain_tips, not both"})
    if "rain_tips" in metrics and not doc.get("mm_per_tip"):
        errors.append({"field": "mm_per_tip", "message": "is required when the station sends rain_tips"})
    for metric, bounds in (doc.get("plausible") or {}).items():
        if len(bounds) == 2 and not bounds[0] < bounds[1]:
            errors.append({"field": f"plausible.{metric}", "message": "min must be less than max"})
    if (doc.get("lat") is None) != (doc.get("lon") is None):
        errors.append({"field": "lat" if doc.get("lat") is None else "lon", "message": "give both lat and lon, or neither"})
    for i, target in enumerate(doc.get("downstream") or []):
        if target["station_id"] == doc.get("id"):
            errors.append({"field": f"downstream.{i}.station_id", "message": "a station cannot flow into itself"})
    for i, area in enumerate(doc.get("areas") or []):
        problem = polygon_problem(area["polygon"]) if area.get("polygon") is not None else None
        if problem:
            errors.append({"field": f"areas.{i}.polygon", "message": problem})
    return errors


def network_errors(conn, doc: dict) -> list[dict]:
    """``[{field, message}]`` when ``doc``'s ``downstream`` names a station that does not exist or closes a cycle (spec section 11)."""
    s = schema.stations
    rows = [dict(r._mapping) for r in conn.execute(sa.select(s.c.id, s.c.downstream))]
    network = network_from_stations([r for r in rows if r["id"] != doc["id"]] + [doc])
    errors = []
    for station_id, field, message in network_problems(network):
        # Only this station's links are being changed; a cycle found now runs through them.
        if station_id == doc["id"] or field == "downstream":
            errors.append({"field": field, "message": message})
    return errors


def siren_errors(conn, doc: dict) -> list[dict]:
    """``[{field, message}]`` for the station's sirens: an id twice, or one another station already has."""
    if not doc.get("sirens"):
        return []
    return [{"field": f, "message": m} for f, m in siren_problems(doc["sirens"], doc.get("id"), siren_owners(conn))]


def segment_errors(doc: dict, zone) -> list[dict]:
    """``[{field, message}]`` when the station's resident warnings would not fit one SMS (spec section 9)."""
    problem = segment_problem(default_templates(), doc, zone)
    if problem is None:
        return []
    return [{"field": "sms_name" if doc.get("sms_name") else "name", "message": problem}]


def new_station_rules(given: dict | None, metrics) -> dict:
    """The rules a new station starts with: ``given`` as a whole document (as ``PUT /rules`` takes it),
    or the defaults when none are given. Validated by the rules engine's own parser, so a bad
    threshold document is refused here with the engine's message, field by field."""
    if given is None:
        return new_station_rules_doc()
    try:
        json.dumps(given, allow_nan=False)
    except ValueError:
        raise _validation([{"field": "rules", "message": "numbers must be finite"}]) from None
    try:
        return rules_to_doc(replace_rules(given, default_rules_doc(), measured=metrics))
    except RulesError as exc:
        raise _validation([{"field": f"rules.{f}".rstrip("."), "message": str(m)} for f, m in exc.errors]) from None


def _stations_changed(svc) -> None:
    """Tell the ingest side (and this app's shared list answers) that the station registry changed."""
    _list_answers().clear()
    svc.ingestor.forget_stations()


LIST_CHECK_SECONDS = 1.0


def _list_answers() -> SharedAnswers:
    """This app's station-list answers, shared by every caller (see service/http/answers.py)."""
    return current_app.extensions["ews_station_list_answers"]


def _share_list_answers(state) -> None:
    """One set of list answers per app; held ones are served beneath Flask to viewers (answers.HeldBeneath)."""
    answers = state.app.extensions["ews_station_list_answers"] = SharedAnswers(LIST_CHECK_SECONDS)
    state.app.extensions["ews_held_beneath"].serve("/api/v1/stations", answers, query_string, {}, ("viewer",))


blp.record_once(_share_list_answers)


def _list_mark():
    """What the station list shows may have changed when this does: states, registry, maintenance in force."""
    with reading() as conn:
        return tuple(conn.execute(_list_mark_query(), {"now": services().clock()}).one())


@functools.lru_cache(maxsize=1)
def _list_mark_query():
    """The mark's statement, built once. Every write of a state row raises its version; a window
    ended early moves its end to now, so the windows in force say it too."""
    s, st, mw = schema.stations, schema.station_state, schema.maintenance_windows
    now = sa.bindparam("now")
    in_force = sa.and_(mw.c.starts_at <= now, mw.c.ends_at > now)
    return sa.select(
        sa.select(sa.func.count()).select_from(st).scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.sum(st.c.version), 0)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(s).scalar_subquery(),
        sa.select(sa.func.max(s.c.updated_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(mw).where(in_force).scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.sum(mw.c.id), 0)).where(in_force).scalar_subquery(),
        sa.select(sa.func.max(mw.c.id)).scalar_subquery(),
    )


# ---------------------------------------------------------------- routes

@blp.route("")
class Stations(MethodView):
    @operation(blp, "viewer", 200, page_schema(StationSchema), query=StationListArgs, held=lambda: _list_answers())
    def get(self, args):
        """List stations (by id), each with its current status."""
        # Every dashboard and COC screen polls this list; it holds no personal data, so one
        # answer serves every caller until what it shows changed.
        return respond(_list_answers().answer(request.query_string, _list_mark, lambda: current_app.json.dumps(
            page_schema(StationSchema)().dump(self._page(args))).encode()))

    @staticmethod
    def _page(args) -> dict:
        s, st = schema.stations, schema.station_state
        query = sa.select(s)
        if args.get("kecamatan"):
            query = query.where(s.c.kecamatan == args["kecamatan"])
        with reading() as conn:
            rows, next_cursor = keyset_page(conn, query, (s.c.id,), args, descending=False)
            ids = [r.id for r in rows]
            states = {r.station_id: r for r in conn.execute(sa.select(st).where(st.c.station_id.in_(ids)))} if ids else {}
            windows = maintenance.in_force(conn, ids, services().clock())
        return {"items": [station_json(r, states.get(r.id), windows.get(r.id)) for r in rows],
                "next_cursor": next_cursor}

    @operation(blp, "admin", 201, StationSchema, body=StationCreateSchema, conflict=True)
    def post(self, data):
        """Register a station (admin) with ``rules`` (a whole rules document) or the default rules."""
        svc = services()
        doc = {"areas": [], "plausible": {}, "downstream": [], "expected_interval_s": 600,
               "cap_radius_km": DEFAULT_RADIUS_KM, **data}
        if not doc["areas"] and doc.get("kecamatan"):
            doc["areas"] = [{"kecamatan": doc["kecamatan"], "desa": doc.get("desa")}]
        errors = check_station(doc) or segment_errors(doc, svc.settings.tz)
        if errors:
            raise _validation(errors)
        rules = new_station_rules(doc.pop("rules", None), doc["metrics"])
        values = {k: doc.get(k) for k in EDITABLE}
        s = schema.stations
        with changing() as (conn, now):
            errors = network_errors(conn, doc) or siren_errors(conn, doc)
            if errors:
                raise _validation(errors)
            if conn.execute(sa.select(s.c.id).where(s.c.id == doc["id"])).first() is not None:
                raise Problem(409, f"Station {doc['id']!r} already exists.")
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(s).values(id=doc["id"], rules=rules, created_at=now, updated_at=now,
                                                     **values))
            except sa.exc.IntegrityError:
                raise Problem(409, f"Station {doc['id']!r} already exists.") from None
            created = load_station(conn, doc["id"])
            audit.record(conn, current_actor(), "create", "station", doc["id"], None, {**created, "rules": rules}, now)
        _stations_changed(svc)
        return created


@blp.route("/<station_id>")
class StationView(MethodView):
    @operation(blp, "viewer", 200, StationSchema)
    def get(self, station_id):
        """One station with its current status."""
        with reading() as conn:
            return load_station(conn, station_id)

    @operation(blp, "admin", 200, StationSchema, body=StationPatchSchema)
    def patch(self, data, station_id):
        """Change fields of a station (admin); rules are changed with PUT /stations/{id}/rules."""
        svc = services()
        s = schema.stations
        with changing() as (conn, now):
            before = load_station(conn, station_id)
            doc = {**before, **data}
            errors = (check_station(doc) or segment_errors(doc, svc.settings.tz)
                      or ("downstream" in data and network_errors(conn, doc))
                      or siren_errors(conn, doc))
            if errors:
                raise _validation(errors)
            if data:
                conn.execute(sa.update(s).where(s.c.id == station_id).values(updated_at=now, **data))
            after = load_station(conn, station_id)
            audit.record(conn, current_actor(), "update", "station", station_id, before, after, now)
        _stations_changed(svc)
        return after

    @operation(blp, "admin", 204, conflict=True)
    def delete(self, station_id):
        """Remove a station (admin): refused with 409 while it has an active alert; readings and
        closed alerts are kept for the record."""
        s, st, a = schema.stations, schema.station_state, schema.alerts
        with changing() as (conn, now):
            before = load_station(conn, station_id)
            active = conn.execute(
                sa.select(sa.func.count()).select_from(a).where(a.c.station_id == station_id, a.c.state == "active")
            ).scalar_one()
            if active:
                raise Problem(409, f"Station {station_id!r} has {active} active alert(s); "
                                   "wait until they close before removing it.")
            upstream = [r.id for r in conn.execute(sa.select(s.c.id, s.c.downstream))
                        if any(d.get("station_id") == station_id for d in (r.downstream or []))]
            if upstream:
                raise Problem(409, f"Station {station_id!r} is downstream of {', '.join(upstream)}; "
                                   "remove it from their downstream first.")
            conn.execute(sa.delete(st).where(st.c.station_id == station_id))
            conn.execute(sa.delete(s).where(s.c.id == station_id))
            audit.record(conn, current_actor(), "delete", "station", station_id, before, None, now)
        _stations_changed(services())
        return None
