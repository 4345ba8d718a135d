"""The ingest path: payloads from MQTT or HTTP become stored readings, dead letters and rule events.

One batch of messages is one database transaction: samples are inserted with
``ON CONFLICT DO NOTHING`` on (station, metric, ts), so a redelivered or re-sent
sample changes nothing (and one with a different value is a ``conflicting_duplicate``,
see ``service/samples.py``); only the samples inserted for the first time reach the
rules engine, in the same transaction as the events they cause. A message the database
refuses is isolated and kept as an ``internal_error`` dead letter; only an unavailable
database stops the batch (``database_unavailable``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from alerts.model import Rejection, Sample
from sensors.payload import StationInfo, parse_payload
from service import alerting, batch_insert, dead_letters, quality, samples, station_states
from service.db.schema import stations
from service.exercise_ingest import ExerciseIngest
from service.heap import collector_waits
from service.ingest_messages import STATION_ID_RE, IngestResult, Message, database_unavailable, dead_letter
from service.samples import Offered, Skipped
from service.station_rules import station_rules
from service.wiring import Shared, Wakeups

log = logging.getLogger(__name__)

STATION_CACHE_SECONDS = 5.0


@dataclasses.dataclass
class _Station:
    info: StationInfo
    row: dict
    rules: object = None  # alerts.rules.Rules, parsed once per cache refresh


class Ingestor:
    """Validates, stores and judges batches of reading payloads."""

    def __init__(self, shared: Shared, *, topic_prefix: str, exercise: bool, dead_letter_cap: dead_letters.DeadLetterCap,
                 wake: Wakeups = Wakeups()) -> None:
        self.shared = shared
        self.topic_prefix = topic_prefix
        self.exercise = exercise  # EWS_EXERCISE: every alert is marked as an exercise
        self.dead_letter_cap = dead_letter_cap
        self.wake = wake
        self._stations: dict[str, _Station] = {}
        self._stations_loaded = 0.0
        self._lock = threading.Lock()
        self.states = station_states.StationStates()
        # One batch at a time per process (MQTT worker, HTTP posts, replays): the held states are
        # changed in place by a batch and dropped if it does not commit.
        self._writing = threading.RLock()
        self.exercises = ExerciseIngest(self)

    # -- entry points -------------------------------------------------------------------------

    def ingest_http(self, station_id: str, body: bytes) -> IngestResult:
        """Ingest one HTTP-posted payload for ``station_id``; commit before returning."""
        prefix = self.topic_prefix
        message = Message(
            topic=f"{prefix}/stations/{station_id}/readings",
            payload=body,
            received_at=self.shared.clock(),
            source="http",
            station_id=station_id,
        )
        return self.ingest([message])[0]

    def ingest(self, messages: list[Message]) -> list[IngestResult]:
        """Store a batch of messages in one transaction; return one result per message.

        Only an unavailable database propagates (the caller retries and acknowledges nothing);
        a message the database refuses, or that hits a bug, is isolated and dead-lettered.
        """
        if any(self.exercises.claims(message.topic) for message in messages):
            # Drill readings are a separate step with tables of their own (service/exercise_ingest.py).
            return self.exercises.ingest_alongside(messages, self.ingest)
        started = time.perf_counter()
        try:
            results, dead_bytes = self._committed(messages)
            self.dead_letter_cap.written(dead_bytes)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(messages) == 1:
                results = [self.dead_letter_failed(messages[0], exc)]
            else:
                log.warning("batch of %d messages failed (%s); retrying one by one", len(messages), _short_error(exc))
                results = [self._ingest_alone(message) for message in messages]
        self.count_results(results, messages)
        self.shared.metrics.ingest_batch_seconds.observe(time.perf_counter() - started)
        if any(result.events for result in results):
            self.wake.events_recorded()
        return results

    def _committed(self, messages: list[Message]) -> tuple[list[IngestResult], int]:
        """One batch in one transaction; the held states of a batch that did not commit are dropped."""
        with self._writing, collector_waits():
            try:
                with self.shared.engine.begin() as conn:
                    return self._ingest_batch(conn, messages)
            except BaseException:
                self.states.forget()  # what the batch changed in memory is not in the database
                raise

    def _ingest_alone(self, message: Message) -> IngestResult:
        """Retry one message alone; if it fails again it becomes an ``internal_error`` dead letter."""
        try:
            results, dead_bytes = self._committed([message])
            self.dead_letter_cap.written(dead_bytes)
            return results[0]
        except Exception as exc:
            if database_unavailable(exc):
                raise
            return self.dead_letter_failed(message, exc)

    def dead_letter_failed(self, message: Message, exc: Exception) -> IngestResult:
        """Keep a message that could not be stored (refused by the database, or a bug) whole, for replay.

        If even the dead letter cannot be written, the database is the problem: that error
        propagates, so the message stays unacknowledged in the broker.
        """
        log.error("message on %s could not be ingested (%s); kept as an internal_error dead letter",
                  message.topic[:200], _short_error(exc), exc_info=not isinstance(exc, DBAPIError))
        station_id = message.station_id or _station_from_topic(message.topic, self.topic_prefix)
        rejection = Rejection("internal_error", _short_error(exc))
        if not message.replay:
            with self.shared.engine.begin() as conn:
                dead_bytes = dead_letters.insert(conn, [dead_letter(message, station_id, [rejection])])
            self.dead_letter_cap.written(dead_bytes)
        return IngestResult(station_id=station_id, rejected=[rejection])

    # -- one transaction ----------------------------------------------------------------------

    def _ingest_batch(self, conn: Connection, messages: list[Message]) -> tuple[list[IngestResult], int]:
        """Parse, store and judge ``messages`` on ``conn`` (inside a transaction).

        Returns the results and the bytes of dead letters written (for the cap).
        """
        known: dict[str, _Station | None] = {}  # this batch's stations: one registry look-up each
        results = [self.parse_message(conn, message, known) for message in messages]
        offers_by_station: dict[str, list[tuple[IngestResult, Offered]]] = defaultdict(list)
        received_by_station: dict[str, datetime] = {}
        for message, result in zip(messages, results):
            if result.accepted:
                offers_by_station[result.station_id].append((result, Offered(result.accepted, result.indexes)))
                received_by_station[result.station_id] = message.received_at
        skipped = self._store_stations(conn, offers_by_station, received_by_station) if offers_by_station else []
        if skipped:
            samples.settle_against_stored(conn, skipped)
        for offers in offers_by_station.values():
            for result, offer in offers:
                result.accepted, result.duplicates = offer.kept, offer.duplicates
                result.rejected.extend(offer.conflicts)
        rows = [dead_letter(message, result.station_id, result.rejected)
                for message, result in zip(messages, results) if result.rejected and not message.replay]
        return results, dead_letters.insert(conn, rows)

    def parse_message(self, conn: Connection, message: Message, known: dict | None = None) -> IngestResult:
        """Parse one message into accepted samples (not yet stored) and rejections."""
        station_id = message.station_id or _station_from_topic(message.topic, self.topic_prefix)
        if known is not None and station_id in known:
            station = known[station_id]
        else:
            station = self.known_station(conn, station_id) if station_id else None
            if known is not None:
                known[station_id] = station
        parsed = parse_payload(message.payload, station.info if station else None, message.received_at)
        result = IngestResult(station_id, parsed.samples, 0, parsed.rejections, [], parsed.indexes)  # the parser's lists
        if parsed.seqs and log.isEnabledFor(logging.DEBUG):  # min and max only when someone reads them
            log.debug("%s seq %s..%s", station_id, min(parsed.seqs), max(parsed.seqs))
        return result

    def _store_stations(self, conn: Connection, offers_by_station: dict[str, list[tuple[IngestResult, Offered]]],
                        received_by_station: dict[str, datetime]) -> list[Skipped]:
        """Insert every station's samples in one statement, judge each station from its held state, write the rows.

        ``offers_by_station``: each station's messages, in arrival order: the inserted samples, rain
        rejections and events are assigned back to them. Returns the samples the database already
        held, to be compared with the stored values.
        """
        ids = sorted(offers_by_station)  # one global lock order: no deadlock between instances
        held = self.states.lock(conn, ids, min(received_by_station.values()), self._rules_of)
        plans, rows = [], []
        for station_id in ids:
            station, state = self._stations[station_id], held[station_id]
            offers, received_at = offers_by_station[station_id], received_by_station[station_id]
            offered = samples.unique(s for _, offer in offers for s in offer.samples)
            rain, rain_rejections, counter = samples.rain_from_tips(
                offered, state.row.get("rain_counter"), station.row.get("mm_per_tip") or 0.0,
                station.info.plausible.get("rainfall"))
            # Rain made of counters belongs to no single message: the batch's last one reports it.
            offers[-1][0].rejected.extend(rain_rejections)
            rows += [(s.station_id, s.metric, s.ts, s.value, received_at) for s in offered + rain]
            plans.append((station_id, offered, rain, counter))
        stored = batch_insert.insert_batch(conn, rows, frozenset(s for s in ids if held[s].fresh))
        skipped: list[Skipped] = []
        changes = []
        for station_id, offered, rain, counter in plans:
            inserted = stored.inserted(station_id, offered + rain)
            offers = offers_by_station[station_id]
            skipped += samples.assign_inserted([offer for _, offer in offers], offered, inserted,
                                               all_inserted=stored.all_new)
            changes.append(self._judge_station(conn, station_id, held[station_id], inserted, counter,
                                               received_by_station[station_id], offers[-1][0],
                                               stored.first_ids.get(station_id)))
        self.states.write(conn, changes)
        return skipped

    def _judge_station(self, conn: Connection, station_id: str, held, inserted: list[Sample], counter: dict | None,
                       received_at: datetime, last: IngestResult, first_id: int | None) -> dict:
        """Judge one station's new samples (signal too: a station that only reports its signal is still back
        online; rain_tips counters are judged as the rainfall made of them); return its row's changes."""
        station = self._stations[station_id]
        judged = [s for s in inserted if s.metric != "rain_tips"]
        reporting = samples.is_news(held.row, received_at)
        values = samples.station_state_values(held.row, inserted, received_at, counter)
        if not judged:
            return station_states.changes(held, station_id, values)
        judgement, events = alerting.judge_station(
            conn, station_id, self._rules_of(station_id), held.engine, judged, received_at,
            online=bool(held.row.get("online")), reporting=reporting, exercise=self.exercise,
            expected_interval_s=station.row.get("expected_interval_s"), metrics=self.shared.metrics)
        last.events.extend(events)
        due = quality.quality_due_at(judgement, received_at, station.row.get("expected_interval_s"))
        if due is not False:
            values["quality_due_at"] = due  # a doubtful water level held back (spec section 17)
        return station_states.changes(held, station_id, values, judgement,
                                      rain=any(s.metric == "rainfall" for s in judged), first_id=first_id)

    def _rules_of(self, station_id: str):
        """The station's effective rules, parsed once per registry refresh."""
        station = self._stations[station_id]
        if station.rules is None:
            station.rules = station_rules(station.row)
        return station.rules

    # -- station registry cache ---------------------------------------------------------------

    def known_station(self, conn: Connection, station_id: str) -> _Station | None:
        """Return the station (from a short-lived cache; a miss re-reads the registry)."""
        if not STATION_ID_RE.match(station_id):
            return None
        with self._lock:
            stale = time.monotonic() - self._stations_loaded > STATION_CACHE_SECONDS
            if stale or station_id not in self._stations:
                fresh = {row["id"]: _to_station(row, self._stations.get(row["id"])) for row in _all_stations(conn)}
                # A station deleted and created again under its id starts afresh: drop its held state.
                self.states.forget(s for s, old in self._stations.items()
                                   if s not in fresh or fresh[s].row.get("created_at") != old.row.get("created_at"))
                self._stations = fresh
                self._stations_loaded = time.monotonic()
            return self._stations.get(station_id)

    def forget_stations(self) -> None:
        """Drop the station cache (after the registry changed)."""
        with self._lock:
            self._stations_loaded = 0.0

    # -- metrics ------------------------------------------------------------------------------

    def count_results(self, results: list[IngestResult], messages: list[Message]) -> None:
        """Count the batch's accepted, duplicate and rejected samples and each reading's lag."""
        metrics = self.shared.metrics
        accepted: dict[str, int] = defaultdict(int)
        duplicates: dict[str, int] = defaultdict(int)
        rejected: dict[str, int] = defaultdict(int)
        lags: list[float] = []
        for message, result in zip(messages, results):
            received_at, stored = message.received_at, 0
            for sample in result.accepted:
                if sample.metric != "rain_tips":
                    stored += 1
                    lags.append((received_at - sample.ts).total_seconds())
            accepted[message.source] += stored
            duplicates[message.source] += result.duplicates
            for rejection in result.rejected:
                rejected[rejection.reason] += 1
        # One call per label and batch, not per message (the counters take a lock each).
        for source, count in accepted.items():
            if count:
                metrics.readings_accepted.labels(source).inc(count)
        for source, count in duplicates.items():
            if count:
                metrics.readings_duplicate.labels(source).inc(count)
        for reason, count in rejected.items():
            metrics.readings_rejected.labels(reason).inc(count)
        metrics.ingest_lag.observe_all([lag if lag > 0.0 else 0.0 for lag in lags])  # as max(0.0, lag), one lock


# -- helpers (module level: no state) ---------------------------------------------------------


def _short_error(exc: BaseException) -> str:
    """The first line of the error (the driver's own message, without SQLAlchemy's SQL and parameters)."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}"[:500]


@functools.lru_cache(maxsize=4096)  # a network's topics are few: each is cut once, not once per message
def _station_from_topic(topic: str, prefix: str) -> str | None:
    """The station of a readings topic, or of a backlog topic (spec section 16: same payload, same path)."""
    head = f"{prefix}/stations/"
    if not topic.startswith(head):
        return None
    for leaf in ("/readings", "/backlog"):
        if topic.endswith(leaf):
            return topic[len(head) : -len(leaf)] or None
    return None


def _all_stations(conn: Connection) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(select(stations))]


def _to_station(row: dict, cached: _Station | None = None) -> _Station:
    """The registry row as ingest uses it; an unchanged row keeps the rules parsed from it (a refresh every
    few seconds re-parsed every station's rules)."""
    if cached is not None and cached.row == row:
        return cached
    plausible = {metric: (float(b[0]), float(b[1])) for metric, b in (row.get("plausible") or {}).items()}
    info = StationInfo(id=row["id"], metrics=tuple(row.get("metrics") or ()), plausible=plausible)
    return _Station(info=info, row=row)
