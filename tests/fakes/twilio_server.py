"""Kept only for tests/e2e/test_urgent_first.py until it moves to ``sinks.twilio`` (it is red on main for
another reason: see notes/house-root.md); the one Twilio stand-in is ``sinks/twilio.py``."""

from sinks.twilio import FakeTwilio  # noqa: F401
