"""The simulated siren controller's answers (sensors/siren_sim.py), as docs/sirens.md asks of a real one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sensors.siren_sim import answer_for

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


def command(action: str, expires_in_s: float = 60, command_id: str = "c1") -> dict:
    return {"command_id": command_id, "action": action, "level": "awas", "duration_s": 600, "alert_id": 3,
            "sent_at": "2026-11-30T06:00:00Z",
            "expires_at": (NOW + timedelta(seconds=expires_in_s)).isoformat().replace("+00:00", "Z")}


def test_it_answers_on_test_and_off_with_the_state_it_is_in():
    seen: set[str] = set()
    assert answer_for(command("on"), NOW, seen)[0] == {"command_id": "c1", "state": "on", "detail": "simulated"}
    assert answer_for(command("test", command_id="c2"), NOW, seen)[0]["state"] == "on"
    assert answer_for(command("off", command_id="c3"), NOW, seen)[0]["state"] == "off"


def test_a_repeated_command_is_answered_again_and_an_expired_one_ignored():
    seen: set[str] = set()
    answer_for(command("on"), NOW, seen)
    again, words = answer_for(command("on"), NOW, seen)
    assert again["command_id"] == "c1" and "repeated" in words
    assert answer_for(command("on", expires_in_s=-1, command_id="old"), NOW, seen)[0] is None
    assert answer_for({"action": "on"}, NOW, seen)[0] is None
