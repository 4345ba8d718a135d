"""The figures of an event report (alerts/report.py): lead time and its parts, delays, counts, the period summary."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from alerts import report as core
from alerts.report import EventFacts, LeadTime, Point, SmsFacts

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(id_, type_, level, seconds, received_after=1.0):
    """An event caused by a reading measured at T0 + seconds and received ``received_after`` later."""
    return EventFacts(id=id_, type=type_, level=level, at=at(seconds), reading_ts=at(seconds),
                      received_at=at(seconds + received_after), value=1.0)


def sms(id_, event_id, sent, status="delivered", resident=True, kind="warning", desa="Laskap", subscriber=None):
    return SmsFacts(id=id_, event_id=event_id, kind=kind, status=status, sent_at=None if sent is None else at(sent),
                    resident=resident, subscriber_id=subscriber or id_, kecamatan="Malili", desa=desa)


FLOOD = [event(1, "raised", "waspada", 0), event(2, "escalated", "siaga", 600), event(3, "escalated", "awas", 1800),
         event(4, "deescalated", "siaga", 3600), event(5, "cleared", "normal", 5400)]


def test_lead_time_runs_from_the_first_resident_warning_to_the_first_awas_reading():
    messages = [sms(10, 1, 4.0), sms(11, 1, 6.5), sms(12, 1, 2.0, resident=False), sms(13, 2, 603.0)]
    lead = core.lead_time(FLOOD, messages, "awas", Point(at(2400), 3.4))
    # Staff got theirs first (2 s); the first resident SMS went at 4 s; AWAS was measured at 1800 s.
    assert lead.seconds == 1796.0
    assert (lead.status, lead.reference, lead.reached_at) == ("before", "awas", at(1800))
    assert (lead.first_warning_at, lead.first_warning_event_id) == (at(4.0), 1)
    assert (lead.head_start_s, lead.reading_delay_s, lead.dispatch_delay_s) == (1800.0, 1.0, 3.0)
    assert lead.late_readings is False


def test_lead_time_is_null_when_no_resident_was_warned():
    messages = [sms(10, 1, 4.0, resident=False), sms(11, 1, None, status="failed"),
                sms(12, 3, 1805.0, kind="reminder")]
    lead = core.lead_time(FLOOD, messages, "awas", None)
    assert (lead.seconds, lead.status) == (None, "no_resident_warned")


def test_a_subscriber_deleted_since_does_not_count_as_a_warned_resident():
    lead = core.lead_time(FLOOD, [sms(10, 1, 4.0, resident=None)], "awas", None)
    assert lead.status == "no_resident_warned"


def test_without_awas_the_lead_time_runs_to_the_peak():
    events = FLOOD[:2] + [event(6, "cleared", "normal", 7200)]
    lead = core.lead_time(events, [sms(10, 1, 5.0)], "siaga", Point(at(1500), 2.9))
    assert (lead.reference, lead.reached_at, lead.seconds) == ("peak", at(1500), 1495.0)
    # With no stored readings, the first event at the peak level stands for the peak.
    lead = core.lead_time(events, [sms(10, 1, 5.0)], "siaga", None)
    assert (lead.reference, lead.reached_at, lead.seconds) == ("peak", at(600), 595.0)


def test_a_warning_after_awas_gives_a_negative_lead_time():
    events = [event(1, "raised", "awas", 0)]
    lead = core.lead_time(events, [sms(10, 1, 12.0)], "awas", None)
    assert (lead.seconds, lead.status, lead.head_start_s, lead.dispatch_delay_s) == (-12.0, "after", 0.0, 11.0)


def test_a_replayed_flood_says_its_readings_were_late_and_cannot_be_positive():
    delay = 6 * 3600.0  # a flood of six hours ago, replayed now
    events = [event(1, "raised", "waspada", 0, received_after=delay + 7200),
              event(2, "escalated", "awas", 7200, received_after=delay)]
    messages = [sms(10, 1, delay + 7200 + 2.0)]  # sent 2 s after the (late) reading arrived
    lead = core.lead_time(events, messages, "awas", None)
    assert lead.late_readings is True
    assert lead.seconds == -(delay + 2.0)
    assert lead.head_start_s == 7200.0  # what the thresholds gave: two hours before AWAS
    assert lead.reading_delay_s == delay + 7200


@given(head=st.floats(0, 86400), delay=st.floats(0, 86400), dispatch=st.floats(0, 3600))
def test_the_lead_time_is_exactly_head_start_minus_reading_delay_minus_dispatch(head, delay, dispatch):
    events = [EventFacts(1, "raised", "waspada", at(0), reading_ts=at(0), received_at=at(delay)),
              EventFacts(2, "escalated", "awas", at(head), reading_ts=at(head), received_at=at(head + 1))]
    lead = core.lead_time(events, [sms(10, 1, delay + dispatch)], "awas", None)
    assert abs(lead.seconds - (lead.head_start_s - lead.reading_delay_s - lead.dispatch_delay_s)) <= 0.2
    assert lead.late_readings == (round(delay, 1) > core.LATE_READING_S)


def test_event_figures_give_the_delay_to_the_first_and_last_sms_and_counts_by_state():
    messages = [sms(10, 1, 3.5), sms(11, 1, 9.25, status="failed"), sms(12, 1, None, status="pending"),
                sms(13, 1, 5.0, status="sent")]
    figures = core.event_figures(FLOOD[0], messages)
    assert figures["warning_delay_s"] == {"first": 3.5, "last": 9.2}
    assert figures["reading_delay_s"] == 1.0
    assert figures["sms_total"] == 4
    assert figures["sms"] == {"delivered": 1, "sent": 1, "undelivered": 0, "failed": 1, "pending": 1,
                              "sending": 0, "unknown": 0}


def test_an_event_without_sms_has_no_delays():
    assert core.event_figures(FLOOD[3], [])["warning_delay_s"] == {"first": None, "last": None}


def test_states_unknown_to_the_report_are_counted_too():
    counts = core.count_by_state([sms(1, 1, 1.0, status="superseded")])
    assert counts["superseded"] == 1 and list(counts)[-1] == "superseded"


@given(st.lists(st.sampled_from(["delivered", "sent", "failed", "pending", "expired", "unknown"]), max_size=50))
def test_counts_by_state_add_up_to_every_sms(states):
    messages = [sms(i, 1, 1.0, status=s) for i, s in enumerate(states)]
    assert sum(core.count_by_state(messages).values()) == len(messages)
    totals = core.sms_totals(messages)
    assert sum(p["messages"] for p in totals["places"]) + totals["by_audience"]["staff"] == len(messages)


def test_sms_totals_place_residents_per_desa_and_keep_staff_apart():
    messages = [sms(1, 1, 1.0, desa="Laskap"), sms(2, 1, 1.0, desa="Pongkeru", status="failed"),
                sms(3, 1, 1.0, desa="Laskap", status="sent"), sms(4, 1, 1.0, desa=None),
                sms(5, 1, 1.0, resident=False, desa=None), sms(6, 1, 1.0, resident=None, desa=None)]
    totals = core.sms_totals(messages)
    places = {(p["kecamatan"], p["desa"]): (p["messages"], p["by_state"]["delivered"]) for p in totals["places"]}
    assert places == {("Malili", "Laskap"): (2, 1), ("Malili", "Pongkeru"): (1, 0), ("Malili", None): (1, 1)}
    assert totals["by_audience"] == {"resident": 4, "staff": 1, "unknown": 1}
    assert totals["staff_by_state"]["delivered"] == 1
    assert totals["by_kind"] == {"warning": 6}


def test_resident_warning_counts_count_warnings_and_reminders_handed_over_and_distinct_people():
    messages = [sms(1, 1, 1.0, subscriber=7), sms(2, 3, 1801.0, kind="reminder", subscriber=7, status="sent"),
                sms(3, 1, None, status="pending", subscriber=8), sms(4, 5, 5401.0, kind="all_clear", subscriber=7),
                sms(5, 1, 1.0, resident=False, subscriber=9)]
    assert core.resident_warning_counts(messages) == (2, 1, 1)


def test_median():
    assert core.median([]) is None
    assert core.median([5.0]) == 5.0
    assert core.median([30.0, -10.0, 20.0]) == 20.0
    assert core.median([1.0, 2.0, 4.0, 10.0]) == 3.0


def _episode(alert_id, station, level, lead_seconds, status, late=False, sent=10, delivered=9, peak=None):
    lead = LeadTime(lead_seconds, status, "awas", None, late_readings=late)
    return core.Episode(alert_id, station, "water_level", T0, None, level, peak, sent, delivered, sent, lead)


def test_period_totals_count_episodes_levels_warnings_and_the_median_lead_time():
    episodes = [_episode(1, "PKR-LASKAP", "awas", 1800.0, "before", peak=Point(at(10), 3.4)),
                _episode(2, "PKR-LASKAP", "siaga", -60.0, "after", peak=Point(at(20), 2.6)),
                _episode(3, "KLN-WOTU", "waspada", None, "no_resident_warned", sent=0, delivered=0),
                _episode(4, "MLL-MALILI", "awas", -7200.0, "after", late=True)]
    totals = core.period_totals(episodes)
    assert totals["episodes"] == 4 and totals["stations"] == 3
    assert totals["by_peak_level"] == {"awas": 2, "siaga": 1, "waspada": 1}
    assert (totals["warnings_sent"], totals["warnings_delivered"]) == (30, 27)
    assert (totals["median_lead_time_s"], totals["lead_times"]) == (-60.0, 3)
    assert (totals["warned_before"], totals["warned_after"], totals["no_resident_warned"]) == (1, 2, 1)
    assert totals["late_readings"] == 1
    peaks = core.station_peaks(episodes)
    assert [p["station_id"] for p in peaks] == ["MLL-MALILI", "PKR-LASKAP", "KLN-WOTU"]
    laskap = peaks[1]
    assert (laskap["episodes"], laskap["peak_level"], laskap["peak_value"], laskap["peak_at"]) == (2, "awas", 3.4, at(10))


def test_the_chart_metric_and_the_rain_window_that_carried_an_alert():
    assert core.chart_metric("water_level", []) == "water_level"
    assert core.chart_metric("offline", ["water_level", "battery"]) == "water_level"
    assert core.chart_metric("offline", ["rain_tips"]) == "rainfall"
    assert core.chart_metric("offline", ["battery"]) is None
    windows = {"1h": {"waspada": 10, "siaga": 20}, "24h": {"waspada": 50, "siaga": 100}}
    assert core.rain_window({"1h": 12.0, "24h": 110.0}, windows, "siaga") == "24h"
    assert core.rain_window({"1h": 25.0, "24h": 60.0}, windows, "siaga") == "1h"
    assert core.rain_window({}, windows, "siaga") == "1h"


def test_the_peak_is_the_first_of_the_highest_values():
    points = [Point(at(0), 1.0), Point(at(1), 3.0), Point(at(2), 3.0), Point(at(3), 2.0)]
    assert core.peak_point(points) == Point(at(1), 3.0)
    assert core.peak_point([]) is None


def test_the_lead_time_document_has_wire_times():
    lead = core.lead_time(FLOOD, [sms(10, 1, 4.0)], "awas", None)
    doc = lead.as_dict()
    assert doc["reached_at"] == "2026-11-30T06:30:00Z" and doc["first_warning_at"] == "2026-11-30T06:00:04Z"
    assert doc["seconds"] == 1796.0
