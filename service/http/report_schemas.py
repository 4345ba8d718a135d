"""OpenAPI schemas of the event report (``/alerts/{id}/report``) and the period summary (``/reports``)."""

from __future__ import annotations

import marshmallow as ma

from service.http.alerts_api import AlertEventSchema, AlertSchema
from service.http.schemas import UTCDateTime

Seconds = ma.fields.Float
COUNTS = {"description": "SMS counted by delivery state (delivered, sent, undelivered, failed, pending, "
                         "sending, unknown, then any other)"}


class WarningDelaySchema(ma.Schema):
    first = Seconds(allow_none=True, metadata={"description": "reading measured -> first SMS handed to the provider"})
    last = Seconds(allow_none=True, metadata={"description": "reading measured -> last SMS handed to the provider"})


class ReportEventSchema(AlertEventSchema):
    """An event with the figures of its SMS."""

    reading_received_at = UTCDateTime(allow_none=True, metadata={"description": "when the reading reached the service"})
    reading_delay_s = Seconds(allow_none=True, metadata={"description": "measured -> received (late data, replays)"})
    warning_delay_s = ma.fields.Nested(WarningDelaySchema)
    sms_total = ma.fields.Integer()
    sms = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata=COUNTS)


class SmsPlaceSchema(ma.Schema):
    kecamatan = ma.fields.String(allow_none=True)
    desa = ma.fields.String(allow_none=True, metadata={"description": "null: residents of the whole kecamatan"})
    messages = ma.fields.Integer()
    by_state = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata=COUNTS)


class SmsFailureSchema(ma.Schema):
    id = ma.fields.Integer()
    event_id = ma.fields.Integer(allow_none=True)
    phone = ma.fields.String(metadata={"description": "masked for every role, e.g. +62812****7890"})
    status = ma.fields.String()
    error_code = ma.fields.String(allow_none=True)
    kecamatan = ma.fields.String(allow_none=True)
    desa = ma.fields.String(allow_none=True)


class ReportSmsSchema(ma.Schema):
    total = ma.fields.Integer()
    by_state = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata=COUNTS)
    by_kind = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                             metadata={"description": "warning, reminder, all_clear, operational"})
    by_audience = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                                 metadata={"description": "resident, staff, unknown (subscriber deleted since)"})
    places = ma.fields.List(ma.fields.Nested(SmsPlaceSchema), metadata={"description": "resident SMS per desa"})
    staff_by_state = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(),
                                    metadata={"description": "staff SMS by delivery state"})
    failures = ma.fields.List(ma.fields.Nested(SmsFailureSchema),
                              metadata={"description": "failed and undelivered SMS (the first 100)"})


class LeadTimeSchema(ma.Schema):
    """How long before the water came people knew: ``seconds = head_start_s - reading_delay_s - dispatch_delay_s``."""

    seconds = Seconds(allow_none=True, metadata={"description": "same as lead_time_s"})
    status = ma.fields.String(metadata={"description": "before, after, no_resident_warned or unknown"})
    reference = ma.fields.String(metadata={"description": "awas, or peak when the station never reached AWAS"})
    reached_at = UTCDateTime(allow_none=True, metadata={"description": "measurement time of the AWAS (or peak) reading"})
    first_warning_at = UTCDateTime(allow_none=True,
                                   metadata={"description": "first resident warning handed to the provider"})
    first_warning_event_id = ma.fields.Integer(allow_none=True)
    warning_reading_at = UTCDateTime(allow_none=True,
                                     metadata={"description": "measurement time of the reading behind that warning"})
    head_start_s = Seconds(allow_none=True, metadata={"description": "warning reading measured -> AWAS"})
    reading_delay_s = Seconds(allow_none=True, metadata={"description": "warning reading measured -> received"})
    dispatch_delay_s = Seconds(allow_none=True, metadata={"description": "warning reading received -> SMS handed over"})
    late_readings = ma.fields.Boolean(metadata={"description": "the warning's reading arrived over 60 s late "
                                                               "(gateway backlog or replayed history)"})


class ReportStationSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    river = ma.fields.String(allow_none=True)
    kecamatan = ma.fields.String(allow_none=True)
    desa = ma.fields.String(allow_none=True)
    lat = ma.fields.Float(allow_none=True)
    lon = ma.fields.Float(allow_none=True)
    areas = ma.fields.List(ma.fields.Dict(), metadata={"description": "the {kecamatan, desa} places it warns"})
    metrics = ma.fields.List(ma.fields.String())
    thresholds = ma.fields.Dict(metadata={"description": "water_level {level: m}; rainfall {window: {level: mm}}"})
    notify_from = ma.fields.String()


class SeriesSchema(ma.Schema):
    metric = ma.fields.String(allow_none=True)
    unit = ma.fields.String()
    window = ma.fields.String(allow_none=True, metadata={"description": "rainfall: the rolling window charted"})
    from_ = UTCDateTime(data_key="from", attribute="from")
    to = UTCDateTime()
    thresholds = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float())
    count = ma.fields.Integer(metadata={"description": "stored values in the window"})
    peak = ma.fields.Dict(allow_none=True, metadata={"description": "{value, ts}: the highest value of the episode"})


class QualityMarkSchema(ma.Schema):
    ts = UTCDateTime()
    value = ma.fields.Float()
    quality = ma.fields.String(validate=ma.validate.OneOf(["doubtful", "spike"]))


class AlertReportSchema(ma.Schema):
    """The event report of one alert (spec section 14)."""

    alert = ma.fields.Nested(AlertSchema)
    station = ma.fields.Nested(ReportStationSchema)
    events = ma.fields.List(ma.fields.Nested(ReportEventSchema), metadata={"description": "oldest first"})
    sms = ma.fields.Nested(ReportSmsSchema)
    lead_time_s = Seconds(allow_none=True, metadata={"description": "first resident warning handed to the provider "
                                                                    "-> AWAS reached (or the peak); null when no "
                                                                    "resident was warned; negative: warned after"})
    lead_time = ma.fields.Nested(LeadTimeSchema)
    series = ma.fields.Nested(SeriesSchema)
    spikes = ma.fields.List(ma.fields.Nested(QualityMarkSchema), metadata={
        "description": "spec section 17: the station's water levels marked `spike` (refuted by the next sample, "
                       "never judged, left out of the series and its peak) or `doubtful` within the series' "
                       "window, oldest first"})
    generated_at = UTCDateTime()


class ReportArgs(ma.Schema):
    lang = ma.fields.String(load_default="id", validate=ma.validate.OneOf(["id", "en"]),
                            metadata={"description": "language of the printable page (id default, en)"})


class HtmlReportArgs(ReportArgs):
    ticket = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200),
                              metadata={"description": "a short-lived link ticket from the dashboard "
                                                       "(instead of a Bearer header)"})


class SummaryArgs(ma.Schema):
    from_ = UTCDateTime(data_key="from", attribute="from", load_default=None,
                        metadata={"description": "start (inclusive), RFC 3339; default `to` minus 31 days"})
    to = UTCDateTime(load_default=None, metadata={"description": "end (exclusive), RFC 3339; default now"})
    format = ma.fields.String(load_default=None, validate=ma.validate.OneOf(["json", "csv"]),
                              metadata={"description": "csv: the episodes as CSV (also `Accept: text/csv`)"})


class SummaryTotalsSchema(ma.Schema):
    episodes = ma.fields.Integer()
    by_peak_level = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    stations = ma.fields.Integer()
    warnings_sent = ma.fields.Integer(metadata={"description": "resident warnings and reminders handed to the provider"})
    warnings_delivered = ma.fields.Integer(metadata={"description": "of those, confirmed delivered"})
    residents_warned = ma.fields.Integer(metadata={"description": "distinct residents, summed over episodes"})
    median_lead_time_s = Seconds(allow_none=True)
    lead_times = ma.fields.Integer(metadata={"description": "episodes with a lead time (the median's base)"})
    warned_before = ma.fields.Integer()
    warned_after = ma.fields.Integer()
    no_resident_warned = ma.fields.Integer()
    late_readings = ma.fields.Integer(metadata={"description": "episodes whose warning came from late data"})


class SummaryStationSchema(ma.Schema):
    station_id = ma.fields.String()
    station = ma.fields.String(allow_none=True)
    river = ma.fields.String(allow_none=True)
    kecamatan = ma.fields.String(allow_none=True)
    episodes = ma.fields.Integer()
    peak_level = ma.fields.String()
    peak_value = ma.fields.Float(allow_none=True)
    peak_at = UTCDateTime(allow_none=True)


class SummaryEpisodeSchema(ma.Schema):
    alert_id = ma.fields.Integer()
    station_id = ma.fields.String()
    station = ma.fields.String(allow_none=True)
    river = ma.fields.String(allow_none=True)
    kecamatan = ma.fields.String(allow_none=True)
    kind = ma.fields.String()
    state = ma.fields.String()
    opened_at = UTCDateTime()
    closed_at = UTCDateTime(allow_none=True)
    peak_level = ma.fields.String()
    peak_value = ma.fields.Float(allow_none=True, metadata={"description": "m, or mm over rain_window"})
    peak_at = UTCDateTime(allow_none=True)
    unit = ma.fields.String()
    rain_window = ma.fields.String(allow_none=True)
    warnings_sent = ma.fields.Integer()
    warnings_delivered = ma.fields.Integer()
    residents_warned = ma.fields.Integer()
    lead_time_s = Seconds(allow_none=True)
    lead_time_status = ma.fields.String()
    late_readings = ma.fields.Boolean()
    report = ma.fields.String(metadata={"description": "path of the episode's event report"})


class PeriodSummarySchema(ma.Schema):
    """The regency's episodes over a period (what BPBD's monthly report needs)."""

    from_ = UTCDateTime(data_key="from", attribute="from")
    to = UTCDateTime()
    timezone = ma.fields.String()
    generated_at = UTCDateTime()
    totals = ma.fields.Nested(SummaryTotalsSchema)
    stations = ma.fields.List(ma.fields.Nested(SummaryStationSchema), metadata={"description": "highest level first"})
    episodes = ma.fields.List(ma.fields.Nested(SummaryEpisodeSchema), metadata={"description": "oldest first"})
    truncated = ma.fields.Boolean(metadata={"description": "more than 5,000 episodes: the oldest 5,000 are listed"})
