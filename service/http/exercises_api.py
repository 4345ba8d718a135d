"""``/api/v1/exercises``: drills that never touch real warnings (spec section 10).

Operators and admins start and end them; only an admin may start one that reaches residents
(``residents: true``). Every start and end is audited. Viewers read them, with each station's
exercise level, and the drill's own readings. The domain is ``service/exercises.py``.
"""

from __future__ import annotations

import marshmallow as ma
import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts.model import STORED_METRICS
from service import audit, exercises
from service.db import schema
from service.http import changing, reading, services
from service.http.auth import current_actor, current_caller
from service.http.errors import Problem
from service.http.pagination import PageArgs, keyset_page, page_schema
from service.http.routes import operation, paged_list, where_equal
from service.http.schemas import Strict, Text, UTCDateTime
from service.http.station_schemas import STATION_ID_RE

blp = Blueprint("exercises", __name__, url_prefix="/api/v1/exercises",
                description="Exercises (drills): readings, state and alerts of their own")

MAX_STATIONS = 200
MAX_NOTE = 500


class ExerciseCreateSchema(Strict):
    """A new exercise: which stations, until when, and whether residents get its LATIHAN messages."""

    stations = ma.fields.List(ma.fields.String(validate=ma.validate.Regexp(STATION_ID_RE)), required=True,
                              validate=ma.validate.Length(min=1, max=MAX_STATIONS),
                              metadata={"description": "ids of the stations the drill covers"})
    until = UTCDateTime(required=True, metadata={"description": "when it ends by itself: RFC 3339, at most 24 h ahead"})
    residents = ma.fields.Boolean(load_default=False, metadata={
        "description": "also send its LATIHAN messages to the residents of those stations' areas (admin only)"})
    note = Text(load_default="", max_length=MAX_NOTE, metadata={"description": "what the drill is for"})


class ExerciseSchema(ma.Schema):
    """An exercise (spec section 10)."""

    id = ma.fields.Integer()
    stations = ma.fields.List(ma.fields.String())
    residents = ma.fields.Boolean()
    note = ma.fields.String()
    started_at = UTCDateTime()
    until = UTCDateTime()
    ended_at = UTCDateTime(allow_none=True, metadata={"description": "null while it runs"})
    by = ma.fields.String(metadata={"description": "who started it"})
    ended_by = ma.fields.String(allow_none=True, metadata={"description": "who ended it; `until` when it ran out"})


class ExerciseStationStatusSchema(ma.Schema):
    level = ma.fields.String()
    last_seen = UTCDateTime(allow_none=True)
    latest = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Dict())


class ExerciseDetailSchema(ExerciseSchema):
    status = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(ExerciseStationStatusSchema),
                            metadata={"description": "per station that sent drill readings: its exercise level"})


class ExerciseListArgs(PageArgs):
    state = ma.fields.String(validate=ma.validate.OneOf(["active", "ended"]),
                             metadata={"description": "active (not ended yet) or ended"})


class ExerciseReadingArgs(PageArgs):
    station_id = ma.fields.String(validate=ma.validate.Regexp(STATION_ID_RE))
    metric = ma.fields.String(validate=ma.validate.OneOf(STORED_METRICS))


class ExerciseReadingSchema(ma.Schema):
    station_id = ma.fields.String()
    metric = ma.fields.String()
    ts = UTCDateTime()
    value = ma.fields.Float()


def _missing(exercise_id: int) -> str:
    return f"No exercise {exercise_id}."


@blp.route("")
class Exercises(MethodView):
    @paged_list(blp, "viewer", ExerciseListArgs, ExerciseSchema, order=(schema.exercises.c.id,),
                to_json=exercises.to_dict)
    def get(self, args):
        """Exercises, newest first; `state=active|ended`."""
        return exercises.list_query(args.get("state"))

    @operation(blp, "operator", 201, ExerciseSchema, body=ExerciseCreateSchema, conflict=True)
    def post(self, data):
        """Start an exercise now (operator; `residents: true` admin only); 409 when a station is in a running one."""
        if data["residents"] and current_caller().role != "admin":
            raise Problem(403, "Only an admin may start an exercise that sends LATIHAN messages to residents.")
        with changing() as (conn, now):  # ExerciseError: a 422 naming its field, StationBusy: a 409 (http/errors.py)
            created = exercises.start(conn, station_ids=data["stations"], until=data["until"],
                                      residents=data["residents"], note=data["note"], by=current_actor(), now=now)
            audit.record(conn, current_actor(), "create", "exercise", created["id"], None, created, now)
        return created


@blp.route("/<int:exercise_id>")
class ExerciseView(MethodView):
    @operation(blp, "viewer", 200, ExerciseDetailSchema)
    def get(self, exercise_id):
        """One exercise, with the exercise level of each station that sent drill readings."""
        with reading(missing=_missing(exercise_id)) as conn:
            return {**exercises.get(conn, exercise_id), "status": exercises.station_status(conn, exercise_id)}

    @operation(blp, "operator", 200, ExerciseSchema, conflict=True)
    def delete(self, exercise_id):
        """End an exercise now (operator): its open alerts close with their all-clear; 409 if it has ended."""
        with changing(missing=_missing(exercise_id)) as (conn, now):  # AlreadyEnded is a 409 (http/errors.py)
            before = exercises.get(conn, exercise_id)
            ended, events = exercises.end(conn, exercise_id, by=current_actor(), now=now)
            audit.record(conn, current_actor(), "end", "exercise", exercise_id, before, ended, now)
        if events:
            services().wake.dispatcher()
        return ended


@blp.route("/<int:exercise_id>/readings")
class ExerciseReadings(MethodView):
    @operation(blp, "viewer", 200, page_schema(ExerciseReadingSchema), query=ExerciseReadingArgs)
    def get(self, args, exercise_id):
        """The drill's own readings, newest first (never in a station's real readings)."""
        r = schema.exercise_readings
        query = where_equal(sa.select(r).where(r.c.exercise_id == exercise_id), args, ("station_id", "metric"))
        with reading(missing=_missing(exercise_id)) as conn:
            exercises.get(conn, exercise_id)
            rows, next_cursor = keyset_page(conn, query, (r.c.ts, r.c.id), args)
        items = [{"station_id": row.station_id, "metric": row.metric, "ts": row.ts, "value": row.value} for row in rows]
        return {"items": items, "next_cursor": next_cursor}
