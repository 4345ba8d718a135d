"""``ews dead-letters replay``: ingest stored payloads again, through the normal ingest path.

Spec section 9: after registering the station that sent them (or fixing its metrics), the
payloads it sent are not lost. Each dead letter is replayed once: it is marked with the time
and what became of it. The payload is judged as at its original arrival (``received_at``), so a
sample that was fresh then is not refused as too old now, and samples older than what the
station has reported since never bring it "back online". A replay's rejections are no new dead
letters: the replayed one stays, with the reasons in its ``replay`` mark. One exception to "once":
a payload whose station is still not registered is left unmarked (nothing was tried), so replaying
before registering the station does not use up its replay.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections import Counter
from datetime import datetime

import sqlalchemy as sa

from config.settings import load_settings
from sensors.payload import parse_timestamp
from service import dead_letters as store
from service.bootstrap import bootstrap
from service.db.migrate import upgrade
from service.db.schema import dead_letters
from service.ingest import Message

CHUNK = 100  # dead letters per ingest transaction


@dataclasses.dataclass
class ReplayReport:
    """What a replay did, in samples (and the dead letters it went through)."""

    dead_letters: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped_truncated: int = 0
    reasons: Counter = dataclasses.field(default_factory=Counter)

    def summary(self) -> str:
        """One line for people."""
        again = ", ".join(f"{reason} {n}" for reason, n in self.reasons.most_common())
        text = (f"replayed {self.dead_letters} dead letter(s): {self.stored} sample(s) stored, "
                f"{self.duplicates} duplicate(s), {self.rejected} rejected again" + (f" ({again})" if again else ""))
        if self.skipped_truncated:
            text += f"; {self.skipped_truncated} not replayed (payload not kept whole)"
        return text


def _selection(station: str | None, reason: str | None, since: datetime | None):
    d = dead_letters
    query = sa.select(d.c.id, d.c.topic, d.c.payload, d.c.received_at, d.c.station_id, d.c.truncated).where(
        d.c.replayed_at.is_(None))
    if station:
        query = query.where(d.c.station_id == station)
    if reason:
        query = query.where(store.reason_filter(reason))
    if since:
        query = query.where(d.c.received_at >= since)
    return query.order_by(d.c.id)


def replay(services, *, station: str | None = None, reason: str | None = None,
           since: datetime | None = None) -> ReplayReport:
    """Re-ingest the dead letters not replayed yet that match; mark each; return the totals."""
    report = ReplayReport()
    last_id = 0
    while True:
        with services.engine.connect() as conn:
            rows = conn.execute(_selection(station, reason, since).where(dead_letters.c.id > last_id)
                                .limit(CHUNK)).all()
        if not rows:
            return report
        last_id = rows[-1].id
        _replay_chunk(services, rows, report)


def _replay_chunk(services, rows, report: ReplayReport) -> None:
    now = services.clock()
    marks: dict[int, dict] = {}
    whole = [row for row in rows if not row.truncated]
    for row in rows:
        if row.truncated:
            report.skipped_truncated += 1
            marks[row.id] = {"stored": 0, "duplicates": 0, "rejected": 0, "reasons": ["truncated"]}
    # Rows of the previous release held one rejection each: the same payload may be there several
    # times. It is ingested once; its copies are marked with the same outcome.
    firsts: dict[tuple, object] = {}
    for row in whole:
        firsts.setdefault((row.topic, row.payload, row.received_at), row)
    messages = [Message(topic=r.topic, payload=r.payload.encode("utf-8"), received_at=r.received_at,
                        source="replay", station_id=None, replay=True) for r in firsts.values()]
    outcome = dict(zip(firsts, services.ingestor.ingest(messages))) if messages else {}
    for key, result in outcome.items():
        report.dead_letters += 1
        report.stored += len(result.accepted)
        report.duplicates += result.duplicates
        report.rejected += len(result.rejected)
        report.reasons.update(r.reason for r in result.rejected)
    for row in whole:
        result = outcome[(row.topic, row.payload, row.received_at)]
        if [r.reason for r in result.rejected] == ["unknown_station"]:
            continue  # still not registered: nothing was tried, so it stays for the replay after registering
        copy = firsts[(row.topic, row.payload, row.received_at)] is not row
        marks[row.id] = {"stored": 0 if copy else len(result.accepted),
                         "duplicates": result.duplicates + (len(result.accepted) if copy else 0),
                         "rejected": len(result.rejected),
                         "reasons": sorted({r.reason for r in result.rejected})}
    d = dead_letters
    with services.engine.begin() as conn:
        for dead_id, mark in marks.items():
            conn.execute(sa.update(d).where(d.c.id == dead_id, d.c.replayed_at.is_(None))
                         .values(replayed_at=now, replay=mark))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``ews dead-letters replay``."""
    sub = parser.add_subparsers(dest="dead_letters_command", metavar="ACTION", required=True)
    again = sub.add_parser("replay", help="ingest stored payloads again (e.g. after registering their station)",
                           description="Ingest the dead letters not replayed yet through the normal ingest path; "
                                       "each is replayed once and marked. Prints the samples stored, duplicates "
                                       "and rejected again.")
    again.add_argument("--station", metavar="ID", help="only this station's dead letters")
    again.add_argument("--reason", metavar="REASON", help="only payloads with a rejection of this reason, "
                                                          "e.g. unknown_station or metric_not_configured")
    again.add_argument("--since", metavar="RFC3339", type=_rfc3339,
                       help="only those received at or after this time, e.g. 2026-11-30T00:00:00Z")


def _rfc3339(raw: str) -> datetime:
    parsed = parse_timestamp(raw)
    if not isinstance(parsed, datetime):
        raise argparse.ArgumentTypeError(f"{raw!r} is not RFC 3339 with an offset (e.g. 2026-11-30T00:00:00Z)")
    return parsed


def command(args: argparse.Namespace) -> int:
    """Run ``ews dead-letters replay``."""
    services = bootstrap(load_settings(os.environ))  # a ConfigError is printed as one line by service.cli
    try:
        upgrade(services.engine)
        report = replay(services, station=args.station, reason=args.reason, since=args.since)
    finally:
        services.engine.dispose()
    print(report.summary())
    return 0
