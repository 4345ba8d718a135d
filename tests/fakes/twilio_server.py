"""The local Twilio-compatible server used by the tests: it lives in ``service/bench/fake_twilio.py``
(``ews bench`` needs it too, and the installed service must not import from ``tests/``)."""

from service.bench.fake_twilio import *  # noqa: F401,F403
from service.bench.fake_twilio import FakeTwilio  # noqa: F401
