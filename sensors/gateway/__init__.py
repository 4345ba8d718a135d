"""``ews gateway``: a store-and-forward agent for the small Linux board at a field station.

The one rule: **a sample is written to the local SQLite queue before anything else**,
and it leaves the queue only when the broker has acknowledged the MQTT message that
carried it (QoS 1 PUBACK → paho ``on_publish`` with that message id). So a dead GSM link,
a restarted broker or a power cut at the station (SIGKILL included) loses nothing; the
price is that a sample may be sent twice (the service dedupes on station, metric, ts).

Flow::

    source (serial / csv / cmd / stdin) ─► reader thread ─► SQLite queue (WAL, synchronous=FULL)
                                                               │  oldest first, only while connected,
                                                               ▼  packed ≤ 1000 samples and ≤ 256 KiB
                                           publisher (main thread) ─► paho (QoS 1) ─► broker
                                                               ▲
                                     PUBACK (on_publish, mid) ─┘ delete those rows

While the link is down nothing new is handed to paho: the queue grows on disk, and after
the reconnect the backlog goes out as arrays. Messages paho already had in flight are
resent by paho itself on reconnect. After a restart every queued row is sent again.

Text line format (serial, cmd, stdin), one sample per line::

    ts=2026-11-30T06:05:00Z water_level=2.43 battery=12.6 signal=-87

``ts`` (RFC 3339 or epoch seconds; the board's clock when missing), optional ``seq`` and
``station``; every other ``key=value`` is a metric, forwarded as is (the service judges
names and ranges). Blank lines and lines starting with ``#`` are ignored. CSV files have
a header row with the same names (``ts,water_level,battery``); empty cells are skipped.
See docs/field.md.

The package, one module per idea: ``lines`` (the text line and CSV row format),
``queue`` (the durable SQLite outbox), ``source`` (serial / csv / cmd / stdin into the
queue), ``forwarder`` (queue to broker, deleted on PUBACK) and ``cli`` (``ews gateway``).
"""

from sensors.gateway.cli import command, configure_parser
from sensors.gateway.forwarder import Forwarder
from sensors.gateway.lines import LineError, parse_line, sample_from_fields
from sensors.gateway.queue import Queue
from sensors.gateway.source import Source

__all__ = [
    "Forwarder", "LineError", "Queue", "Source", "command", "configure_parser", "parse_line", "sample_from_fields",
]
