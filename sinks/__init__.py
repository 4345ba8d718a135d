"""Test sinks: local stand-ins for the services we do not own, so the real client libraries can be used.

``sinks.twilio.FakeTwilio`` speaks Twilio's Messages API (the real ``twilio`` library sends to it).

One place for the tests (``tests/``) and ``ews bench`` (``service/bench``), the only two users:
the running service never imports a sink (tests/unit/test_architecture.py checks it). It is
installed with the package, so ``ews bench`` works after a plain ``pip install .``, and left out of
the Docker image (a production box has the real providers; run the bench from a checkout).
"""
