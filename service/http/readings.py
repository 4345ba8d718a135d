"""``/api/v1/stations/{id}/readings``: the time series (viewer) and HTTP ingest (gateway)."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

import marshmallow as ma
import sqlalchemy as sa
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts.model import STORED_METRICS
from service import tokens
from service.db import schema
from service.http import reading, services
from service.http.auth import current_caller
from service.http.errors import VALIDATION_TYPE, Problem, field_error
from service.http.pagination import PageArgs, keyset_page
from service.http.routes import operation
from service.http.schemas import UTCDateTime
from service.http.station_schemas import STATION_ID_RE

blp = Blueprint("readings", __name__, url_prefix="/api/v1/stations", description="Readings of a station")

WINDOWS = {"1h": timedelta(hours=1), "3h": timedelta(hours=3), "24h": timedelta(hours=24)}


class ReadingArgs(PageArgs):
    metric = ma.fields.String(validate=ma.validate.OneOf(STORED_METRICS),
                              metadata={"description": "only this metric"})
    from_ = UTCDateTime(data_key="from", metadata={"description": "measurement time at or after (RFC 3339)"})
    to = UTCDateTime(metadata={"description": "measurement time before (RFC 3339)"})
    window = ma.fields.String(validate=ma.validate.OneOf(list(WINDOWS)),
                              metadata={"description": "with metric=rainfall: add `sum`, the rolling total of "
                                                       "the window ending at each reading's ts"})
    order = ma.fields.String(load_default="desc", validate=ma.validate.OneOf(["desc", "asc"]),
                             metadata={"description": "desc (newest first, default) or asc"})


class ReadingSchema(ma.Schema):
    ts = UTCDateTime()
    value = ma.fields.Float()
    metric = ma.fields.String(metadata={"description": "present when the list is not filtered by metric"})
    quality = ma.fields.String(validate=ma.validate.OneOf(["good", "doubtful", "spike"]), metadata={
        "description": "spec section 17: `doubtful` (a water level held back from judgment until the next sample, "
                       "or judged as it is after silence), `spike` (refuted by the next sample, never judged), "
                       "else `good`"})
    sum = ma.fields.Float(metadata={"description": "rolling rainfall total over `window`, ending at ts"})


class ReadingPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ReadingSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)
    window = ma.fields.String(metadata={"description": "the window of `sum`, when asked for"})


class AcceptedSchema(ma.Schema):
    metric = ma.fields.String()
    ts = UTCDateTime()
    value = ma.fields.Float()


class RejectedSchema(ma.Schema):
    reason = ma.fields.String()
    detail = ma.fields.String()
    metric = ma.fields.String(allow_none=True)
    ts = ma.fields.String(allow_none=True)


class IngestResultSchema(ma.Schema):
    station_id = ma.fields.String()
    accepted = ma.fields.List(ma.fields.Nested(AcceptedSchema))
    duplicates = ma.fields.Integer()
    rejected = ma.fields.List(ma.fields.Nested(RejectedSchema))


def _station_known(conn, station_id: str) -> bool:
    s = schema.stations
    return bool(STATION_ID_RE.match(station_id)) and conn.execute(
        sa.select(s.c.id).where(s.c.id == station_id)).first() is not None


def _station_exists(conn, station_id: str) -> None:
    if not _station_known(conn, station_id):
        raise Problem(404, f"No station {station_id[:64]!r}.")


def _check_gateway_scope(svc, caller, station_id: str, known: bool) -> None:
    """A gateway token posts only for its stations: 403 otherwise, before anything is read or stored."""
    if caller is None or caller.role != "gateway":
        return  # admin: any station (an unknown one is a 404 and a dead letter)
    scope = tokens.GatewayScope(token_id=caller.token_id, name=caller.name, stations=caller.stations or (),
                                learn_until=caller.stations_learn_until)
    decision = tokens.gateway_decision(scope, station_id, known, svc.clock())
    if decision == "forbidden":
        raise Problem(403, tokens.forbidden_detail(scope, station_id))
    if decision == "learn":
        tokens.learn_station(svc.engine, scope, station_id)


def with_window_sums(conn, station_id: str, rows, window: timedelta) -> list[float]:
    """For each rainfall row, the sum of rainfall in ``(ts - window, ts]``."""
    if not rows:
        return []
    r = schema.readings
    low = min(row.ts for row in rows) - window
    high = max(row.ts for row in rows)
    series = conn.execute(
        sa.select(r.c.ts, r.c.value)
        .where(r.c.station_id == station_id, r.c.metric == "rainfall", r.c.ts > low, r.c.ts <= high)
        .order_by(r.c.ts)
    ).fetchall()
    times = [s.ts for s in series]
    prefix = [0.0]
    for s in series:
        prefix.append(prefix[-1] + s.value)
    import bisect

    sums = []
    for row in rows:
        end = bisect.bisect_right(times, row.ts)
        start = bisect.bisect_right(times, row.ts - window)
        sums.append(round(prefix[end] - prefix[start], 6))
    return sums


@blp.route("/<station_id>/readings")
class Readings(MethodView):
    @operation(blp, "viewer", 200, ReadingPageSchema, query=ReadingArgs)
    def get(self, args, station_id):
        """Readings of a station, newest first; ``window`` adds rolling rainfall sums."""
        metric = args.get("metric")
        window = args.get("window")
        if window and metric != "rainfall":
            raise field_error("window", "needs metric=rainfall")
        if args.get("from_") and args.get("to") and args["from_"] >= args["to"]:
            raise field_error("to", "must be after from")
        r = schema.readings
        query = sa.select(r.c.id, r.c.ts, r.c.value, r.c.metric, r.c.quality).where(r.c.station_id == station_id)
        if metric:
            query = query.where(r.c.metric == metric)
        if args.get("from_"):
            query = query.where(r.c.ts >= args["from_"])
        if args.get("to"):
            query = query.where(r.c.ts < args["to"])
        with reading() as conn:
            _station_exists(conn, station_id)
            rows, next_cursor = keyset_page(conn, query, (r.c.ts, r.c.id), args, descending=args["order"] == "desc")
            sums = with_window_sums(conn, station_id, rows, WINDOWS[window]) if window else None
        items = []
        for i, row in enumerate(rows):
            item = {"ts": row.ts, "value": row.value, "quality": row.quality}
            if not metric:
                item["metric"] = row.metric
            if sums is not None:
                item["sum"] = sums[i]
            items.append(item)
        out = {"items": items, "next_cursor": next_cursor}
        if window:
            out["window"] = window
        return out

    @operation(blp, "gateway", 200, IngestResultSchema)
    @blp.doc(requestBody={
        "required": True,
        "description": "The MQTT payload (spec section 1): one sample or an array of up to 1000.",
        "content": {"application/json": {"schema": {"oneOf": [
            {"type": "object", "description": "one sample"},
            {"type": "array", "items": {"type": "object"}, "maxItems": 1000, "description": "up to 1000 samples"}]},
                                         "example": {"ts": "2026-11-30T06:05:00Z", "seq": 10452,
                                                     "values": {"water_level": 2.43, "battery": 12.6}}}},
    })
    @blp.alt_response(422, response=HTTPStatus(422).name)
    def post(self, station_id):
        """Post samples over HTTP (gateway or admin). 200 lists what was accepted and rejected;
        422 when nothing in the payload could be used; 404 (and a dead letter) for an unknown station.
        A gateway token gets 403 for a station outside its list, and nothing is stored."""
        svc = services()
        with reading() as conn:
            known = _station_known(conn, station_id)
        _check_gateway_scope(svc, current_caller(), station_id, known)
        result = svc.ingestor.ingest_http(station_id, request.get_data(cache=False))
        if not known:  # the payload is kept as an unknown_station dead letter, for replay once it is registered
            raise Problem(404, f"No station {station_id[:64]!r}; the payload is kept as a dead letter.")
        accepted = [{"metric": s.metric, "ts": s.ts, "value": s.value} for s in result.accepted]
        rejected = [{"reason": j.reason, "detail": j.detail, "metric": j.metric, "ts": j.ts} for j in result.rejected]
        if not accepted and not result.duplicates and rejected:
            errors = [{"field": f"values.{j['metric']}" if j["metric"] else "body",
                       "message": f"{j['reason']}: {j['detail']}".rstrip(": ")} for j in rejected[:100]]
            raise Problem(422, f"Nothing accepted: {rejected[0]['reason']}"
                          + (f" and {len(rejected) - 1} more" if len(rejected) > 1 else "") + ".",
                          type=VALIDATION_TYPE, title="No sample accepted", errors=errors)
        return {"station_id": station_id, "accepted": accepted, "duplicates": int(result.duplicates),
                "rejected": rejected}
