"""The notification policy: who is told of an event, how urgently, in what words (alerts.policy)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from alerts import gsm7, messages, policy, priority
from alerts.levels import Level
from alerts.rules import parse_rules
from config.templates import default_templates

AT = datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)
WITA = ZoneInfo("Asia/Makassar")
RULES = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0},
                     "rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                                  "24h": {"waspada": 50, "siaga": 100, "awas": 150}}})
STATION = policy.StationFacts({"id": "PKR-LASKAP", "name": "Pos TMA Laskap", "river": "Sungai Pongkeru",
                               "areas": [{"kecamatan": "Malili", "desa": "Laskap"}]})
TYPES = ("raised", "escalated", "deescalated", "reminded", "cleared", "acknowledged")


def decide(kind, type_, level, *, peak=Level.AWAS, rules=RULES, exercise=False, drill_residents=False):
    alert = policy.AlertFacts(kind=kind, peak=peak, exercise=exercise, drill_residents=drill_residents)
    return policy.decide(alert, policy.EventFacts(type=type_, level=level, at=AT), STATION, rules)


def test_an_awas_warning_reaches_residents_and_staff_first():
    notice = decide("water_level", "escalated", "awas")
    assert (notice.kind, notice.template, notice.level) == ("warning", "water_level.escalated.awas", "awas")
    assert notice.residents and notice.staff
    assert notice.priority == priority.priority("warning", "awas") == 0


def test_below_notify_from_and_deescalations_tell_nobody():
    siaga_up = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0}, "notify_from": "siaga"})
    assert decide("water_level", "raised", "waspada", rules=siaga_up) is None
    assert decide("water_level", "raised", "siaga", rules=siaga_up).template == "water_level.raised.siaga"
    assert decide("water_level", "deescalated", "siaga") is None
    assert decide("water_level", "acknowledged", "awas") is None


def test_an_all_clear_needs_the_rule_and_a_peak_that_was_announced():
    notice = decide("rainfall", "cleared", "normal", peak=Level.SIAGA)
    assert (notice.kind, notice.template, notice.level, notice.priority) == ("all_clear", "rainfall.all_clear", "normal", 3)
    no_all_clear = parse_rules({"rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40}}, "all_clear": False})
    assert decide("rainfall", "cleared", "normal", peak=Level.AWAS, rules=no_all_clear) is None
    awas_only = parse_rules({"rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40}}, "notify_from": "awas"})
    assert decide("rainfall", "cleared", "normal", peak=Level.SIAGA, rules=awas_only) is None


def test_operational_alerts_reach_staff_only_and_come_last_but_drills():
    raised, cleared = decide("offline", "raised", "waspada"), decide("battery", "cleared", "normal")
    assert (raised.template, cleared.template) == ("offline.raised", "battery.cleared")
    assert not raised.residents and raised.staff and raised.priority == 6
    assert decide("battery", "escalated", "siaga") is None


def test_a_drill_uses_its_own_texts_reaches_residents_only_when_asked_and_never_delays_real_ones():
    staff_only = decide("water_level", "raised", "awas", exercise=True)
    assert staff_only.template == "exercise.water_level.raised.awas" and staff_only.priority == priority.LOWEST
    assert not staff_only.residents and staff_only.staff
    assert decide("water_level", "raised", "awas", exercise=True, drill_residents=True).residents


@given(kind=st.sampled_from(("water_level", "rainfall", "offline", "battery")), type_=st.sampled_from(TYPES),
       level=st.sampled_from(("normal", "waspada", "siaga", "awas")), peak=st.sampled_from(list(Level)),
       exercise=st.booleans(), drill_residents=st.booleans())
def test_every_notice_names_a_template_that_exists_and_renders_in_one_gsm7_segment(kind, type_, level, peak,
                                                                                  exercise, drill_residents):
    notice = decide(kind, type_, level, peak=peak, exercise=exercise, drill_residents=drill_residents)
    if notice is None:
        return
    assert notice.template in messages.REQUIRED_KEYS
    assert notice.residents <= (kind in policy.PUBLIC_KINDS)  # operational alerts never reach residents
    templates = default_templates()
    alert = policy.AlertFacts(kind=kind, peak=peak, exercise=exercise)
    reading = {"value": 3.45, "rate_per_hour": 0.4, "sums": {"1h": 25.0, "24h": 60.0}, "last_seen": "2026-11-30T05:00:00Z"}
    event = policy.EventFacts(type=type_, level=level, at=AT, reading=reading)
    for language in ("id", "en"):
        text = policy.notice_text(templates, language, notice, alert, event, STATION, RULES, WITA)
        assert gsm7.is_gsm7(text) and (len(text) <= 160 or not notice.residents)
        assert text.startswith({"id": "LATIHAN", "en": "EXERCISE"}[language]) == exercise


def test_the_rain_window_that_matters_is_the_highest_sum_over_its_threshold():
    assert policy.rain_window({"sums": {"1h": 25.0, "24h": 60.0}}, RULES, "siaga") == ("1h", 25.0)
    assert policy.rain_window({"sums": {"1h": 12.0, "24h": 110.0}}, RULES, "siaga") == ("24h", 110.0)
    no_rain_rules = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0}})
    assert policy.rain_window({"sums": {"3h": 30.0, "1h": 5.0}}, no_rain_rules, "siaga") == ("1h", 5.0)
    assert policy.rain_window({"window": "1h", "value": 7.0}, RULES, "waspada") == ("1h", 7.0)


def test_an_offline_text_names_the_last_time_the_station_was_heard():
    notice = decide("offline", "raised", "waspada")
    event = policy.EventFacts(type="raised", level="waspada", at=AT, reading={"last_seen": "2026-11-30T04:20:00Z"})
    text = policy.notice_text(default_templates(), "id", notice, policy.AlertFacts(kind="offline"), event, STATION,
                              RULES, WITA)
    assert "12:20" in text and "14:05" not in text


def test_the_plain_text_of_a_broken_template_names_level_kind_and_station():
    alert = policy.AlertFacts(kind="rainfall", exercise=True)
    text = policy.fallback_text(alert, policy.EventFacts(type="raised", level="siaga", at=AT), STATION)
    assert text == "LATIHAN BPBD LUTIM: SIAGA rainfall Pos TMA Laskap. Darurat: 112"


# --- is it still worth sending ---------------------------------------------------------------------

NOW = AT + timedelta(minutes=10)


def queued(kind="warning", level="waspada", state="active", alert_level="waspada", valid_until=None, warnings=None):
    return policy.Queued(kind=kind, level=level, valid_until=valid_until, alert_state=state, alert_level=alert_level,
                         warnings=warnings)


def test_a_warning_goes_while_its_alert_stays_at_its_level_and_within_its_validity():
    assert policy.fate(queued(valid_until=policy.valid_until("warning", AT, 3600)), NOW) is None
    assert policy.fate(queued(alert_level="siaga", level="siaga"), NOW) is None
    assert policy.fate(queued(level="awas", alert_level="siaga"), NOW) is None  # fell back since: still true news


def test_a_warning_of_an_alert_gone_higher_or_closed_is_superseded():
    assert policy.fate(queued(alert_level="awas"), NOW) == "superseded"
    assert policy.fate(queued(state="closed", alert_level="normal"), NOW) == "superseded"
    assert policy.fate(queued(kind="reminder", level="awas", state="closed", alert_level="normal"), NOW) == "superseded"


def test_past_its_validity_a_warning_or_reminder_expires_and_other_kinds_never_do():
    assert policy.valid_until("warning", AT, 600) == AT + timedelta(seconds=600)
    assert policy.fate(queued(valid_until=policy.valid_until("reminder", AT, 300)), NOW) == "expired"
    for kind in ("all_clear", "broadcast", "reply", "operational"):
        assert policy.valid_until(kind, AT, 600) is None
    assert policy.fate(policy.Queued(kind="broadcast"), NOW + timedelta(days=2)) is None


def test_an_all_clear_goes_only_to_someone_who_got_a_warning():
    closed = dict(kind="all_clear", level="normal", state="closed", alert_level="normal")
    assert policy.fate(queued(**closed, warnings=("superseded", "sent")), NOW) is None
    assert policy.fate(queued(**closed, warnings=("unknown",)), NOW) is None  # may have reached them: tell
    assert policy.fate(queued(**closed, warnings=("superseded", "failed", "pending")), NOW) == "superseded"
    assert policy.fate(queued(**closed, warnings=()), NOW) == "superseded"
    # A warning being handed over right now decides it: ask again once it is sent (or not).
    assert policy.fate(queued(**closed, warnings=("superseded", "sending")), NOW) == policy.WAIT
    open_alert = dict(closed, state="active")  # a warning still queued of an open alert will go out first
    assert policy.fate(queued(**open_alert, warnings=("pending",)), NOW) is None


@given(kind=st.sampled_from(("warning", "reminder", "all_clear", "broadcast", "reply", "operational")),
       level=st.sampled_from(("waspada", "siaga", "awas")), alert_level=st.sampled_from(("normal", "waspada", "siaga", "awas")),
       state=st.sampled_from(("active", "closed")), age_s=st.integers(0, 10_000))
def test_a_warning_is_sent_only_when_it_is_the_alerts_highest_news_and_fresh(kind, level, alert_level, state, age_s):
    until = policy.valid_until(kind, AT, 3600)
    verdict = policy.fate(queued(kind, level, state, alert_level, until, warnings=("sent",)), AT + timedelta(seconds=age_s))
    if kind == "warning":
        fresh = age_s <= 3600
        assert (verdict is None) == (fresh and state == "active" and Level.parse(alert_level) <= Level.parse(level))
    if kind in ("broadcast", "reply", "operational"):
        assert verdict is None


def _wave(type_, level, *, own_level=Level.NORMAL, own_active=False, reading=None):
    alert = policy.AlertFacts(kind="upstream", peak=Level.SIAGA, own_level=own_level, own_active=own_active)
    return policy.decide(alert, policy.EventFacts(type=type_, level=level, at=AT, reading=reading), STATION, RULES)


def test_a_wave_from_upstream_warns_residents_unless_the_stations_own_alert_says_as_much():
    notice = _wave("raised", "siaga")
    assert (notice.kind, notice.template) == ("warning", "upstream.raised.siaga") and notice.residents
    assert _wave("escalated", "awas", own_level=Level.SIAGA).template == "upstream.escalated.awas"
    assert _wave("raised", "siaga", own_level=Level.SIAGA) is None  # inhibited: the same level
    assert _wave("raised", "siaga", own_level=Level.AWAS) is None  # inhibited: a higher level
    assert _wave("deescalated", "waspada") is None and _wave("reminded", "awas") is None


def test_a_waves_all_clear_only_without_an_own_alert_and_when_asked():
    assert _wave("cleared", "normal").template == "upstream.all_clear"
    assert _wave("cleared", "normal", own_active=True) is None
    assert _wave("closed", "normal", reading={"all_clear": False}) is None  # its source closed by hand
    assert _wave("closed", "normal", reading={"all_clear": True}).kind == "all_clear"


# --- acknowledgement, stale data, close by hand ------------------------------------------------------


def test_an_acknowledged_alerts_reminders_reach_residents_only():
    alert = policy.AlertFacts(kind="water_level", peak=Level.AWAS, acknowledged=True)
    event = policy.EventFacts(type="reminded", level="awas", at=AT)
    notice = policy.decide(alert, event, STATION, RULES)
    assert notice.residents and not notice.staff and notice.kind == "reminder"
    warning = policy.decide(alert, policy.EventFacts(type="escalated", level="awas", at=AT), STATION, RULES)
    assert warning.staff  # an acknowledgement stops reminders, never a new warning
    drill = policy.AlertFacts(kind="water_level", peak=Level.AWAS, acknowledged=True, exercise=True)
    assert policy.decide(drill, event, STATION, RULES) is None  # nobody left to remind


def test_a_reminder_is_due_only_from_a_reading_younger_than_stale_after_s():
    hour = timedelta(hours=1)
    assert policy.reminder_due(AT - hour, AT - timedelta(minutes=5), AT, RULES)
    assert not policy.reminder_due(AT - hour + timedelta(seconds=1), AT, AT, RULES)  # not an hour yet
    assert not policy.reminder_due(AT - hour, AT - timedelta(seconds=RULES.stale_after_s), AT, RULES)
    assert not policy.reminder_due(None, None, AT, RULES)  # nothing read: nothing to remind of
    off = parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0}, "repeat_awas_s": 0})
    assert not policy.reminder_due(None, AT, AT, off)


def test_closing_by_hand_sends_the_all_clear_only_when_asked():
    alert = policy.AlertFacts(kind="water_level", peak=Level.AWAS)
    silent = policy.EventFacts(type="closed", level="normal", at=AT, reading={"all_clear": False})
    asked = policy.EventFacts(type="closed", level="normal", at=AT, reading={"all_clear": True})
    assert policy.decide(alert, silent, STATION, RULES) is None
    notice = policy.decide(alert, asked, STATION, RULES)
    assert (notice.kind, notice.template, notice.residents) == ("all_clear", "water_level.all_clear", True)
    assert policy.decide(policy.AlertFacts(kind="offline"), asked, STATION, RULES) is None


def test_the_offline_text_says_the_level_the_station_fell_silent_at():
    templates = default_templates()
    notice = decide("offline", "raised", "waspada")
    for language, words in (("id", "Terakhir AWAS."), ("en", "Last level AWAS (danger).")):
        event = policy.EventFacts(type="raised", level="waspada", at=AT, reading={"last_seen": "2026-11-30T04:20:00Z",
                                                                                  "level": "awas"})
        text = policy.notice_text(templates, language, notice, policy.AlertFacts(kind="offline"), event, STATION,
                                  RULES, WITA)
        assert words in text and gsm7.is_gsm7(text)
    quiet = policy.EventFacts(type="raised", level="waspada", at=AT, reading={"last_seen": "2026-11-30T04:20:00Z"})
    text = policy.notice_text(templates, "id", notice, policy.AlertFacts(kind="offline"), quiet, STATION, RULES, WITA)
    assert "Terakhir" not in text and "WITA. Periksa" in text


def test_a_reminder_names_the_time_of_its_reading_not_the_time_it_is_sent():
    alert = policy.AlertFacts(kind="water_level", peak=Level.AWAS)
    event = policy.EventFacts(type="reminded", level="awas", at=AT, reading={"value": 3.4, "ts": "2026-11-30T05:50:00Z"})
    text = policy.notice_text(default_templates(), "id", policy.decide(alert, event, STATION, RULES), alert, event,
                              STATION, RULES, WITA)
    assert "13:50 WITA" in text and "14:05" not in text


# --- maintenance windows ---------------------------------------------------------------------------

REPAIRED = policy.StationFacts(STATION.station, maintenance=True)


def repaired(kind, type_, level, *, peak=Level.AWAS, acknowledged=False, reading=None):
    alert = policy.AlertFacts(kind=kind, peak=peak, acknowledged=acknowledged)
    return policy.decide(alert, policy.EventFacts(type=type_, level=level, at=AT, reading=reading), REPAIRED, RULES)


def test_under_maintenance_residents_are_told_nothing_and_staff_only_of_siaga_and_awas():
    waspada = repaired("water_level", "raised", "waspada")
    assert (waspada.suppressed, waspada.residents, waspada.staff) == (True, False, False)  # on the record only
    for type_, level in (("raised", "siaga"), ("escalated", "awas"), ("reminded", "awas")):
        notice = repaired("water_level", type_, level)
        assert (notice.suppressed, notice.residents, notice.staff, notice.maintenance) == (True, False, True, True)
        assert notice.priority == decide("water_level", type_, level).priority  # as urgent as ever
    assert repaired("water_level", "reminded", "awas", acknowledged=True).staff is False  # seen: no reminder
    cleared = repaired("water_level", "cleared", "normal")
    assert (cleared.kind, cleared.suppressed, cleared.residents, cleared.staff) == ("all_clear", True, False, False)
    assert repaired("rainfall", "raised", "awas").staff  # every gauge of the station
    for kind in ("offline", "battery"):
        assert repaired(kind, "raised", "waspada") is None and decide(kind, "raised", "waspada").staff


def test_an_all_clear_a_window_held_back_is_announced_as_an_all_clear_to_residents_and_staff():
    held = policy.EventFacts(type="announced", level="normal", at=AT, reading={"value": 1.0, "ts": "2026-11-30T02:10:00Z"})
    notice = policy.decide(policy.AlertFacts(kind="water_level", peak=Level.AWAS), held, STATION, RULES)
    assert (notice.kind, notice.template, notice.residents, notice.staff) == ("all_clear", "water_level.all_clear",
                                                                              True, True)
    text = policy.notice_text(default_templates(), "id", notice, policy.AlertFacts(kind="water_level"), held, STATION,
                              RULES, WITA)
    assert "NORMAL" in text and "10:10 WITA" in text and gsm7.septets(text) <= 160  # when it fell, not when told


def test_a_window_opens_no_offline_or_battery_alert_and_a_drill_ignores_it():
    for kind in ("offline", "battery"):
        assert not policy.raises(kind, REPAIRED) and policy.raises(kind, STATION)
    for kind in ("water_level", "rainfall", "upstream", "siren", "sensor"):
        assert policy.raises(kind, REPAIRED)  # judged as always; the notice decides who hears of it
    assert policy.heeds_maintenance(drill=False) and not policy.heeds_maintenance(drill=True)


def test_a_staff_text_under_maintenance_is_marked_and_an_announcement_names_its_readings_time():
    templates = default_templates()
    alert = policy.AlertFacts(kind="water_level", peak=Level.AWAS)
    event = policy.EventFacts(type="raised", level="awas", at=AT, reading={"value": 3.3, "ts": "2026-11-30T06:04:00Z"})
    marks = {"id": "PEMELIHARAAN POS: BPBD LUTIM: AWAS", "en": "MAINTENANCE: BPBD LUTIM: FLOOD AWAS"}
    notice = repaired("water_level", "raised", "awas")
    assert notice.template == "maintenance.water_level.raised.awas" and notice.template in messages.REQUIRED_KEYS
    for language, start in marks.items():
        text = policy.notice_text(templates, language, notice, alert, event, REPAIRED, RULES, WITA)
        assert text.startswith(start) and gsm7.is_gsm7(text) and gsm7.septets(text) <= 160  # one segment
    # The window ended: the alert is announced from the newest stored reading, which names its own time.
    announced = policy.EventFacts(type="announced", level="awas", at=AT, reading={"value": 3.3, "ts": "2026-11-30T02:10:00Z"})
    notice = policy.decide(alert, announced, STATION, RULES)
    assert (notice.kind, notice.template, notice.residents, notice.maintenance) == ("warning", "water_level.raised.awas",
                                                                                   True, False)
    text = policy.notice_text(templates, "id", notice, alert, announced, STATION, RULES, WITA)
    assert text.startswith("BPBD LUTIM: AWAS") and "3.3 m" in text and "10:10 WITA" in text and "14:05" not in text
    assert policy.decide(alert, dataclasses.replace(announced, level="waspada"), STATION,
                         parse_rules({"water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0},
                                      "notify_from": "siaga"})) is None  # below notify_from: nothing to announce


def test_a_wave_from_upstream_warns_a_repaired_station_as_always_unmarked():
    wave = policy.AlertFacts(kind="upstream")
    event = policy.EventFacts(type="raised", level="siaga", at=AT,
                              reading={"source_place": "Mangkutana", "eta": "2026-11-30T08:00:00Z", "value": 2.9})
    notice = policy.decide(wave, event, REPAIRED, RULES)
    assert (notice.residents, notice.staff, notice.suppressed, notice.maintenance) == (True, True, False, False)
    for language in ("id", "en"):
        text = policy.notice_text(default_templates(), language, notice, wave, event, REPAIRED, RULES, WITA)
        assert text.startswith("BPBD LUTIM: ") and len(text) <= 160  # no maintenance mark: residents get it


def test_a_window_end_owes_staff_the_battery_alert_only_for_a_fresh_voltage_still_below_low():
    rules = parse_rules({"battery": {"low": 11.5, "clear_margin": 0.3}, "stale_after_s": 900})
    assert policy.battery_owed(rules, {"value": 11.4, "ts": "x"}, age_s=60)
    assert not policy.battery_owed(rules, {"value": 11.5, "ts": "x"}, age_s=60)  # at low: not below it
    assert not policy.battery_owed(rules, {"value": 10.0, "ts": "x"}, age_s=901)  # stale: the offline check speaks
    assert not policy.battery_owed(rules, None, age_s=None)  # never measured
    assert not policy.battery_owed(parse_rules({"battery": None}), {"value": 10.0, "ts": "x"}, age_s=60)
