"""The pure siren decisions (alerts/sirens.py, spec section 12): what a siren is told, and when."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from alerts import sirens
from alerts.levels import Level
from alerts.sirens import AlertView, Commanded, Override, SirenConfig

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
SIREN = SirenConfig("SRN-WOTU-1", "KLN-WOTU", at=Level.SIAGA, duration_s=600)
WAVE_SIREN = SirenConfig("SRN-WOTU-2", "KLN-WOTU", at=Level.SIAGA, upstream=True, duration_s=600)


def water(level: Level, alert_id: int = 7) -> AlertView:
    return AlertView(alert_id, level, "water_level")


def decide(config, alerts, commanded=None, override=None, now=T0):
    return sirens.next_command(config, sirens.want(config, alerts), commanded, override, now, 30)


def test_on_at_the_configured_level_and_not_below_it():
    assert decide(SIREN, [water(Level.WASPADA)]) is None
    command = decide(SIREN, [water(Level.SIAGA)])
    assert (command.action, command.level, command.alert_id, command.duration_s) == ("on", "siaga", 7, 600)


def test_a_new_level_is_a_new_on_and_falling_below_is_off():
    sounding = Commanded("on", "siaga", 7, T0 + timedelta(seconds=600))
    escalated = decide(SIREN, [water(Level.AWAS)], sounding)
    assert (escalated.action, escalated.level, escalated.reason) == ("on", "awas", "level")
    off = decide(SIREN, [water(Level.WASPADA)], sounding)
    assert (off.action, off.alert_id) == ("off", 7)
    closed = decide(SIREN, [], sounding)
    assert closed.action == "off"
    assert decide(SIREN, [], Commanded("off", None, 7)) is None  # said once is enough


def test_on_is_renewed_before_it_runs_out_with_time_for_every_resend():
    sounding = Commanded("on", "siaga", 7, T0 + timedelta(seconds=600))
    lead = sirens.renew_lead_s(600, 30)
    assert lead == (sirens.MAX_RESENDS + 1) * 30
    assert decide(SIREN, [water(Level.SIAGA)], sounding, now=T0 + timedelta(seconds=600 - lead - 1)) is None
    renewal = decide(SIREN, [water(Level.SIAGA)], sounding, now=T0 + timedelta(seconds=600 - lead))
    assert (renewal.action, renewal.reason) == ("on", "renewal")
    assert sirens.renew_lead_s(60, 30) == 30  # never later than half the duration


def test_upstream_sounds_only_a_siren_that_says_so():
    wave = AlertView(9, Level.AWAS, "upstream")
    assert decide(SIREN, [wave]) is None
    command = decide(WAVE_SIREN, [wave, water(Level.WASPADA)])
    assert (command.action, command.level, command.alert_id) == ("on", "awas", 9)


def test_an_operator_override_holds_until_the_level_changes():
    override = Override("off", "siaga", 7)
    assert decide(SIREN, [water(Level.SIAGA)], None, override) is None
    command = decide(SIREN, [water(Level.AWAS)], None, override)
    assert (command.action, command.level) == ("on", "awas")
    operator_on = Override("on", None, None)  # given with no alert open
    assert decide(SIREN, [], Commanded("on", None, None, T0), operator_on) is None
    assert decide(SIREN, [water(Level.WASPADA)], Commanded("on", None, None, T0), operator_on).action == "off"


def test_maintenance_keeps_a_siren_quiet_and_switches_off_what_it_sounded():
    wanted = sirens.want(SIREN, [water(Level.AWAS)], automatic=False)
    assert wanted.action == "off"
    command = sirens.next_command(SIREN, wanted, Commanded("on", "awas", 7, T0), None, T0, 30)
    assert command.action == "off"


def test_a_test_changes_nothing_the_automation_follows():
    test = sirens.Command("SRN-WOTU-1", "test", None, 10, None, "test")
    assert sirens.after_command(test, T0) is None
    on = sirens.Command("SRN-WOTU-1", "on", "awas", 600, 7, "on")
    assert sirens.after_command(on, T0).on_until == T0 + timedelta(seconds=600)


def test_payload_names_every_field_of_the_contract():
    command = sirens.Command("SRN-WOTU-1", "on", "awas", 600, 7, "on")
    body = sirens.payload("abc", command, T0, sirens.expires_at(T0, 30))
    assert body == {"command_id": "abc", "action": "on", "level": "awas", "duration_s": 600, "alert_id": 7,
                    "sent_at": "2026-11-30T06:00:00Z", "expires_at": "2026-11-30T06:02:00Z"}


def test_acks_are_read_strictly():
    assert sirens.parse_ack({"command_id": "abc", "state": "on"}) == ({"command_id": "abc", "state": "on",
                                                                        "detail": ""}, None)
    assert sirens.parse_ack([1])[1] == "not_an_object"
    assert sirens.parse_ack({"command_id": "abc", "state": "loud"})[1].startswith("bad_ack")
    assert sirens.parse_ack({"state": "on"})[1].startswith("bad_ack")


def test_siren_ids_are_unique_across_the_registry():
    problems = sirens.siren_problems([{"id": "A"}, {"id": "A"}, {"id": "B"}], "KLN-WOTU", {"B": "MLL-MALILI"})
    assert problems == [("sirens.1.id", "'A' is listed twice"),
                        ("sirens.2.id", "'B' is already a siren of station MLL-MALILI")]


@given(timeout=st.floats(min_value=0.5, max_value=120), late=st.lists(st.floats(0, 5), min_size=8, max_size=8))
def test_an_unanswered_command_is_published_at_most_four_times_a_timeout_apart(timeout, late):
    """However late the timer wakes, a command goes out 1 + MAX_RESENDS times, each >= timeout after the last."""
    attempts, last, now, sent = 0, None, T0, []
    for extra in late:
        step = sirens.resend_step(attempts, last, now, timeout)
        if step == "send":
            attempts, last = attempts + 1, now
            sent.append(now)
        elif step == "unanswered":
            break
        due = sirens.due_at(attempts, last, timeout)
        now = (due or now) + timedelta(seconds=extra)
    else:
        step = sirens.resend_step(attempts, last, now, timeout)
    assert step == "unanswered"
    assert len(sent) == 1 + sirens.MAX_RESENDS
    assert all(b - a >= timedelta(seconds=timeout) for a, b in zip(sent, sent[1:]))
