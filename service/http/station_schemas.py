"""Request and response schemas of ``/api/v1/stations`` (the routes are in ``service/http/stations.py``)."""

from __future__ import annotations

import re

import marshmallow as ma

from alerts.areas import MAX_POLYGON_POINTS
from alerts.cap import DEFAULT_RADIUS_KM
from alerts.model import METRICS
from alerts.segment import SMS_NAME_MAX, sms_name_problem
from alerts.sirens import DEFAULT_DURATION_S, MAX_DURATION_S, MIN_DURATION_S, SOUNDING_LEVELS
from service.http.pagination import PageArgs
from service.http.schemas import Strict, Text, UTCDateTime

STATION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_INTERVAL_S = 7 * 86400
EDITABLE = ("name", "river", "kecamatan", "desa", "lat", "lon", "metrics", "areas", "mm_per_tip",
            "expected_interval_s", "plausible", "downstream", "cap_radius_km", "sms_name", "sirens")


class StationAreaSchema(Strict):
    """A place a station warns: a desa, or a whole kecamatan when ``desa`` is omitted."""

    kecamatan = Text(required=True, min_length=1, max_length=120)
    desa = Text(load_default=None, allow_none=True, min_length=1, max_length=120)
    polygon = ma.fields.List(
        ma.fields.List(ma.fields.Float(allow_nan=False), validate=ma.validate.Length(equal=2)),
        validate=ma.validate.Length(max=MAX_POLYGON_POINTS), allow_none=True,
        metadata={"description": "the place's outline for CAP: [lat, lon] points, a closed ring (last = first), "
                                 "at least 4, not crossing itself; without it CAP draws a circle of cap_radius_km"})


class DownstreamSchema(Strict):
    """Where this river's water goes next and how long it takes."""

    station_id = ma.fields.String(required=True, validate=ma.validate.Regexp(STATION_ID_RE))
    travel_s = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=MAX_INTERVAL_S))


class StationSirenSchema(Strict):
    """A siren (or loudspeaker) the station's alerts switch (spec section 12)."""

    id = ma.fields.String(required=True, validate=ma.validate.Regexp(STATION_ID_RE),
                          metadata={"description": "^[A-Za-z0-9_-]{1,64}$; also the siren controller's MQTT user"})
    at = ma.fields.String(load_default="awas", validate=ma.validate.OneOf(list(SOUNDING_LEVELS)),
                          metadata={"description": "the level from which the siren sounds (default awas)"})
    upstream = ma.fields.Boolean(load_default=False, metadata={
        "description": "also sound for the station's upstream alert (a flood wave from upstream)"})
    duration_s = ma.fields.Integer(load_default=DEFAULT_DURATION_S,
                                   validate=ma.validate.Range(min=MIN_DURATION_S, max=MAX_DURATION_S),
                                   metadata={"description": "how long one `on` sounds; renewed while the alert "
                                                            f"stays at or above `at` (default {DEFAULT_DURATION_S})"})


def _sms_name(value: str) -> None:
    problem = sms_name_problem(value)
    if problem:
        raise ma.ValidationError(problem)


def _range_list():
    return ma.fields.List(
        ma.fields.Float(allow_nan=False, validate=ma.validate.Range(min=-1e9, max=1e9)),
        validate=ma.validate.Length(equal=2),
        metadata={"description": "[min, max], min < max"},
    )


class StationPatchSchema(Strict):
    """Fields of a station that may be changed (all optional)."""

    name = Text(min_length=1, max_length=200)
    river = Text(allow_none=True, max_length=120)
    kecamatan = Text(allow_none=True, max_length=120)
    desa = Text(allow_none=True, max_length=120)
    lat = ma.fields.Float(allow_none=True, validate=ma.validate.Range(min=-90, max=90))
    lon = ma.fields.Float(allow_none=True, validate=ma.validate.Range(min=-180, max=180))
    metrics = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(list(METRICS))),
        validate=ma.validate.Length(min=1, max=len(METRICS)),
        metadata={"description": f"what the station sends: {', '.join(METRICS)} (rainfall or rain_tips, not both)"},
    )
    areas = ma.fields.List(ma.fields.Nested(StationAreaSchema), validate=ma.validate.Length(max=200))
    mm_per_tip = ma.fields.Float(allow_none=True, validate=ma.validate.Range(min=0, max=100, min_inclusive=False))
    expected_interval_s = ma.fields.Integer(validate=ma.validate.Range(min=1, max=MAX_INTERVAL_S))
    plausible = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(list(METRICS))), values=_range_list())
    downstream = ma.fields.List(ma.fields.Nested(DownstreamSchema), validate=ma.validate.Length(max=50))
    sirens = ma.fields.List(ma.fields.Nested(StationSirenSchema), validate=ma.validate.Length(max=20), metadata={
        "description": "the sirens this station's water_level alert (and, with upstream, its upstream alert) sounds"})
    sms_name = Text(allow_none=True, validate=_sms_name, metadata={
        "description": f"the whole place phrase of the station's SMS (at most {SMS_NAME_MAX} plain GSM-7 "
                       "characters), instead of the river and the name; null: the river and the name"})
    cap_radius_km = ma.fields.Float(validate=ma.validate.Range(min=0.1, max=100),
                                    metadata={"description": "radius of the CAP circle around the station for "
                                                             f"areas without a polygon (km, default {DEFAULT_RADIUS_KM:g})"})


class StationCreateSchema(StationPatchSchema):
    """A new station; ``rules`` (optional) is its whole rules document, as ``PUT /stations/{id}/rules`` takes it."""

    id = ma.fields.String(required=True, validate=ma.validate.Regexp(STATION_ID_RE),
                          metadata={"description": "^[A-Za-z0-9_-]{1,64}$"})
    name = Text(required=True, min_length=1, max_length=200)
    metrics = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(list(METRICS))),
        required=True,
        validate=ma.validate.Length(min=1, max=len(METRICS)),
    )
    rules = ma.fields.Dict(keys=ma.fields.String(), metadata={"description": "the station's whole rules "
                                                              "document, as PUT /stations/{id}/rules takes it; "
                                                              "the defaults when left out"})


class StationLatestSchema(ma.Schema):
    value = ma.fields.Float()
    ts = ma.fields.String()


class StationMaintenanceSchema(ma.Schema):
    """The maintenance window in force (spec section 10): residents are told nothing of the station."""

    until = UTCDateTime()
    reason = ma.fields.String()


class StationStatusSchema(ma.Schema):
    """What the station is doing now (from station_state)."""

    level = ma.fields.String()
    online = ma.fields.Boolean()
    last_seen = UTCDateTime(allow_none=True)
    latest = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(StationLatestSchema))
    maintenance = ma.fields.Nested(StationMaintenanceSchema, metadata={
        "description": "only while a maintenance window is in force (`POST /maintenance`)"})


class StationAreaOutSchema(ma.Schema):
    kecamatan = ma.fields.String()
    desa = ma.fields.String(allow_none=True)
    polygon = ma.fields.List(ma.fields.List(ma.fields.Float()), allow_none=True)


class DownstreamOutSchema(ma.Schema):
    station_id = ma.fields.String()
    travel_s = ma.fields.Integer()


class StationSirenOutSchema(ma.Schema):
    id = ma.fields.String()
    at = ma.fields.String()
    upstream = ma.fields.Boolean()
    duration_s = ma.fields.Integer()


class StationSchema(ma.Schema):
    """A station as the API returns it."""

    id = ma.fields.String()
    name = ma.fields.String()
    river = ma.fields.String(allow_none=True)
    kecamatan = ma.fields.String(allow_none=True)
    desa = ma.fields.String(allow_none=True)
    lat = ma.fields.Float(allow_none=True)
    lon = ma.fields.Float(allow_none=True)
    metrics = ma.fields.List(ma.fields.String())
    areas = ma.fields.List(ma.fields.Nested(StationAreaOutSchema))
    mm_per_tip = ma.fields.Float(allow_none=True)
    expected_interval_s = ma.fields.Integer()
    plausible = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.Float()))
    downstream = ma.fields.List(ma.fields.Nested(DownstreamOutSchema))
    cap_radius_km = ma.fields.Float()
    sms_name = ma.fields.String(allow_none=True)
    sirens = ma.fields.List(ma.fields.Nested(StationSirenOutSchema))
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    status = ma.fields.Nested(StationStatusSchema)


class StationListArgs(PageArgs):
    kecamatan = Text(max_length=120, metadata={"description": "only stations in this kecamatan"})
