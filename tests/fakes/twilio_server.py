"""Kept only for tests/e2e/test_urgent_first.py and tests/e2e/test_report_flood.py until they move to
``sinks.twilio`` (both fail on main for another reason: see notes/house-root.md); the one Twilio stand-in
is ``sinks/twilio.py``."""

from sinks.twilio import FakeTwilio  # noqa: F401
