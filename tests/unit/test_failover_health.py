"""The failover state of the SMS providers (service.dispatch.failover.Health): pure, on a fake clock."""

from __future__ import annotations

from service.dispatch.failover import Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(failover_s: float = 60.0):
    clock = Clock()
    return Health(["twilio", "gammu"], failover_s, clock), clock


def test_refusals_count_as_down_only_after_the_failover_time():
    health, clock = make()
    health.refused("twilio", "500")
    clock.now += 59.9
    health.refused("twilio", "500")
    assert not health.down("twilio") and health.snapshot()[0]["state"] == "failing"
    clock.now += 0.1
    assert health.down("twilio") and health.snapshot()[0] == {"name": "twilio", "state": "down", "failing_s": 60.0,
                                                               "error": "500"}
    assert not health.down("gammu")


def test_one_accepted_message_brings_a_provider_back():
    health, clock = make()
    health.refused("twilio", "refused")
    clock.now += 120
    health.answered("twilio")
    assert not health.down("twilio") and health.snapshot()[0]["state"] == "up"


def test_a_down_provider_is_probed_once_per_failover_time():
    health, clock = make(failover_s=10)
    assert health.take_probe("twilio")
    assert not health.take_probe("twilio")
    clock.now += 9.9
    assert not health.take_probe("twilio")
    clock.now += 0.1
    assert health.take_probe("twilio")


def test_a_reported_problem_clears_itself_but_not_refused_messages():
    health, clock = make(failover_s=1)
    health.refused("gammu", "outbox missing", observed=True)
    clock.now += 5
    assert health.down("gammu")
    health.problem_gone("gammu")
    assert not health.down("gammu")
    health.refused("twilio", "connection refused")
    clock.now += 5
    health.problem_gone("twilio")  # no problem reported, but its messages are still refused
    assert health.down("twilio")
