"""The ingest path: payloads from MQTT or HTTP become stored readings, dead letters and rule events.

One batch of messages is one database transaction: samples are inserted with
``ON CONFLICT DO NOTHING`` on (station, metric, ts), so a redelivered or re-sent
sample changes nothing; only the samples inserted for the first time reach the
rules engine, in the same transaction as the events they cause.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import defaultdict
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from alerts.model import Rejection, Sample
from sensors.payload import StationInfo, parse_payload
from service import alerting
from service.db.schema import dead_letters, readings, station_state, stations

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_BYTES = 4096
STATION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STATION_CACHE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Message:
    """One payload as it arrived: from MQTT (topic) or HTTP (station in the path)."""

    topic: str
    payload: bytes
    received_at: datetime
    source: str = "mqtt"
    station_id: str | None = None  # set for HTTP; parsed from the topic for MQTT


@dataclasses.dataclass
class IngestResult:
    """What became of one message."""

    station_id: str | None
    accepted: list[Sample] = dataclasses.field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejection] = dataclasses.field(default_factory=list)
    events: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Station:
    info: StationInfo
    row: dict
    rules: object = None  # alerts.rules.Rules, parsed once per cache refresh


class Ingestor:
    """Validates, stores and judges batches of reading payloads."""

    def __init__(self, services) -> None:
        self.services = services
        self._stations: dict[str, _Station] = {}
        self._stations_loaded = 0.0
        self._lock = threading.Lock()

    # -- entry points -------------------------------------------------------------------------

    def ingest_http(self, station_id: str, body: bytes) -> IngestResult:
        """Ingest one HTTP-posted payload for ``station_id``; commit before returning."""
        prefix = self.services.settings.mqtt_topic_prefix
        message = Message(
            topic=f"{prefix}/stations/{station_id}/readings",
            payload=body,
            received_at=self.services.clock(),
            source="http",
            station_id=station_id,
        )
        return self.ingest([message])[0]

    def ingest(self, messages: list[Message]) -> list[IngestResult]:
        """Store a batch of messages in one transaction; return one result per message.

        Database errors propagate (the caller retries and acknowledges nothing);
        any other failure is isolated to the message that caused it.
        """
        started = time.perf_counter()
        try:
            with self.services.engine.begin() as conn:
                results = self._ingest_batch(conn, messages)
        except Exception as exc:
            if _is_database_error(exc) or len(messages) == 1:
                raise
            log.exception("batch of %d messages failed; retrying one by one", len(messages))
            results = [self._ingest_alone(message) for message in messages]
        self._count(results, messages)
        self.services.metrics.ingest_batch_seconds.observe(time.perf_counter() - started)
        if any(result.events for result in results):
            self.services.wake_dispatcher()
        return results

    def _ingest_alone(self, message: Message) -> IngestResult:
        """Retry one message alone; a non-database failure becomes an ``internal_error`` dead letter."""
        try:
            with self.services.engine.begin() as conn:
                return self._ingest_batch(conn, [message])[0]
        except Exception as exc:
            if _is_database_error(exc):
                raise
            log.exception("message on %s could not be ingested; kept as a dead letter", message.topic)
            rejection = Rejection("internal_error", f"{type(exc).__name__}: {exc}"[:500])
            with self.services.engine.begin() as conn:
                _insert_dead_letters(conn, message, None, [rejection])
            return IngestResult(station_id=message.station_id, rejected=[rejection])

    # -- one transaction ----------------------------------------------------------------------

    def _ingest_batch(self, conn: Connection, messages: list[Message]) -> list[IngestResult]:
        """Parse, store and judge ``messages`` on ``conn`` (inside a transaction)."""
        results: list[IngestResult] = []
        samples_by_station: dict[str, list[Sample]] = defaultdict(list)
        received_by_station: dict[str, datetime] = {}
        for message in messages:
            result = self._parse(conn, message)
            results.append(result)
            if result.accepted:
                samples_by_station[result.station_id].extend(result.accepted)
                received_by_station[result.station_id] = message.received_at
        by_station: dict[str, list[IngestResult]] = defaultdict(list)
        for result in results:
            by_station[result.station_id].append(result)
        # Lock stations in one global order: two instances committing batches that share
        # stations would otherwise deadlock on PostgreSQL (each holding a row the other wants).
        for station_id, samples in sorted(samples_by_station.items()):
            self._store_station(conn, station_id, samples, received_by_station[station_id], by_station)
        for message, result in zip(messages, results):
            if result.rejected:
                _insert_dead_letters(conn, message, result.station_id, result.rejected)
        return results

    def _parse(self, conn: Connection, message: Message) -> IngestResult:
        """Parse one message into accepted samples (not yet stored) and rejections."""
        station_id = message.station_id or _station_from_topic(message.topic, self.services.settings.mqtt_topic_prefix)
        result = IngestResult(station_id=station_id)
        station = self._station(conn, station_id) if station_id else None
        parsed = parse_payload(message.payload, station.info if station else None, message.received_at)
        result.accepted, result.rejected = parsed.samples, parsed.rejections
        if parsed.seqs:
            log.debug("%s seq %s..%s", station_id, min(parsed.seqs), max(parsed.seqs))
        return result

    def _store_station(
        self, conn: Connection, station_id: str, samples: list[Sample], received_at: datetime,
        by_station: dict[str, list[IngestResult]],
    ) -> None:
        """Insert one station's samples, update its state and run its rules.

        ``by_station[station_id]`` are this station's results, in arrival order: the inserted
        samples, rain rejections and events are assigned back to them.
        """
        station = self._stations[station_id]
        state = _lock_station_state(conn, station_id, received_at)
        samples = _unique(samples)
        rain, rain_rejections, counter = _rain_from_tips(samples, state.get("rain_counter"), station)
        inserted = _insert_readings(conn, samples + rain, received_at)
        results = by_station[station_id]
        _assign(results, inserted, rain_rejections)
        # Every new sample goes to the rules (signal too: a station that only reports its
        # signal is still back online); rain_tips counters are judged as the rainfall made of them.
        judged = [s for s in inserted if s.metric != "rain_tips"]
        values = _station_state_values(state, inserted, received_at, counter)
        if not judged:
            conn.execute(update(station_state).where(station_state.c.station_id == station_id).values(**values))
        else:
            if station.rules is None:
                station.rules = alerting.station_rules(station.row)
            events = alerting.apply_samples(conn, station.row, judged, received_at, exercise=self.exercise(),
                                            state=state, rules=station.rules, state_values=values)
            results[-1].events.extend(events)

    def exercise(self) -> bool:
        """True while alerts are exercises (EWS_EXERCISE, or a simulator's retained exercise flag)."""
        return self.services.settings.exercise or self.services.exercise_now()

    # -- station registry cache ---------------------------------------------------------------

    def _station(self, conn: Connection, station_id: str) -> _Station | None:
        """Return the station (from a short-lived cache; a miss re-reads the registry)."""
        if not STATION_ID_RE.match(station_id):
            return None
        with self._lock:
            stale = time.monotonic() - self._stations_loaded > STATION_CACHE_SECONDS
            if stale or station_id not in self._stations:
                self._stations = {row["id"]: _to_station(row) for row in _all_stations(conn)}
                self._stations_loaded = time.monotonic()
            return self._stations.get(station_id)

    def forget_stations(self) -> None:
        """Drop the station cache (after the registry changed)."""
        with self._lock:
            self._stations_loaded = 0.0

    # -- metrics ------------------------------------------------------------------------------

    def _count(self, results: list[IngestResult], messages: list[Message]) -> None:
        metrics = self.services.metrics
        for message, result in zip(messages, results):
            stored = [s for s in result.accepted if s.metric != "rain_tips"]
            if stored:
                metrics.readings_accepted.labels(message.source).inc(len(stored))
            if result.duplicates:
                metrics.readings_duplicate.labels(message.source).inc(result.duplicates)
            for rejection in result.rejected:
                metrics.readings_rejected.labels(rejection.reason).inc()
            for sample in stored:
                metrics.ingest_lag.observe(max(0.0, (message.received_at - sample.ts).total_seconds()))


# -- helpers (module level: no state) ---------------------------------------------------------


def _is_database_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, IntegrityError

    return isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError)


def _station_from_topic(topic: str, prefix: str) -> str | None:
    head = f"{prefix}/stations/"
    if not (topic.startswith(head) and topic.endswith("/readings")):
        return None
    station_id = topic[len(head) : -len("/readings")]
    return station_id or None


def _all_stations(conn: Connection) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(select(stations))]


def _to_station(row: dict) -> _Station:
    plausible = {metric: (float(b[0]), float(b[1])) for metric, b in (row.get("plausible") or {}).items()}
    info = StationInfo(id=row["id"], metrics=tuple(row.get("metrics") or ()), plausible=plausible)
    return _Station(info=info, row=row)


def _unique(samples: list[Sample]) -> list[Sample]:
    """Drop repeats of (metric, ts) inside one batch; the first wins, like the database."""
    seen: dict[tuple[str, datetime], Sample] = {}
    for sample in samples:
        seen.setdefault((sample.metric, sample.ts), sample)
    return list(seen.values())


def _rain_from_tips(samples: list[Sample], counter: dict | None, station: _Station):
    """Turn cumulative tip counters into rainfall increments (mm) since the newest known counter.

    A counter older than the newest one carries no new rain (the later difference
    already counted it); a counter that went down is a reset, and its value is the
    tips since the reset.
    """
    mm_per_tip = station.row.get("mm_per_tip") or 0.0
    tips = sorted((s for s in samples if s.metric == "rain_tips"), key=lambda s: s.ts)
    last_ts = datetime.fromisoformat(counter["ts"]) if counter else None
    last_count = counter["count"] if counter else None
    rain: list[Sample] = []
    rejections: list[Rejection] = []
    bounds = station.info.plausible.get("rainfall")
    for sample in tips:
        if last_ts is not None and sample.ts <= last_ts:
            continue
        if last_count is not None and mm_per_tip:
            tips_since = sample.value - last_count if sample.value >= last_count else sample.value
            mm = round(tips_since * mm_per_tip, 4)
            if bounds is not None and mm > bounds[1]:
                rejections.append(Rejection("out_of_range", f"{mm} mm since the previous counter exceeds {bounds[1]}",
                                            metric="rain_tips", ts=sample.ts.isoformat()))
            else:
                rain.append(Sample(sample.station_id, "rainfall", sample.ts, mm))
        last_ts, last_count = sample.ts, sample.value
    new_counter = {"ts": last_ts.isoformat(), "count": last_count} if last_ts is not None else None
    return rain, rejections, new_counter


def _insert_readings(conn: Connection, samples: list[Sample], received_at: datetime) -> list[Sample]:
    """Insert samples, skipping ones already stored; return those inserted now."""
    if not samples:
        return []
    rows = [
        {"station_id": s.station_id, "metric": s.metric, "ts": s.ts, "value": s.value, "received_at": received_at}
        for s in samples
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(readings)
        .on_conflict_do_nothing(index_elements=["station_id", "metric", "ts"])
        .returning(readings.c.metric, readings.c.ts)
    )
    inserted = {(row.metric, row.ts) for row in conn.execute(statement, rows)}
    return [s for s in samples if (s.metric, s.ts) in inserted]


def _lock_station_state(conn: Connection, station_id: str, now: datetime) -> dict:
    """Return the station's state row, creating it; on PostgreSQL the row stays locked until commit.

    The row lock keeps one station's rule state consistent when two instances
    ingest samples of the same station at once (SQLite serialises every writer).
    """
    query = select(station_state).where(station_state.c.station_id == station_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is not None:
        return dict(row._mapping)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(station_state)
        .values(station_id=station_id, level="normal", online=True, latest={}, updated_at=now)
        .on_conflict_do_nothing(index_elements=["station_id"])
    )
    return dict(conn.execute(query).first()._mapping)


def _station_state_values(state: dict, inserted: list[Sample], received_at: datetime, counter: dict | None) -> dict:
    """The newest value of each metric, when the station was last heard, and its tip counter."""
    latest = dict(state.get("latest") or {})
    for sample in inserted:
        known = latest.get(sample.metric)
        if known is None or datetime.fromisoformat(known["ts"]) < sample.ts:
            latest[sample.metric] = {"value": sample.value, "ts": sample.ts.isoformat()}
    values = {"latest": latest, "last_seen": received_at, "online": True, "updated_at": received_at}
    if counter is not None:
        values["rain_counter"] = counter
    return values


def _assign(results: list[IngestResult], inserted: list[Sample], rain_rejections: list[Rejection]) -> None:
    """Split one station's inserted samples back onto its messages; count the rest as duplicates."""
    inserted_keys = {(s.metric, s.ts) for s in inserted}
    claimed: set[tuple[str, datetime]] = set()
    for result in results:
        if not result.accepted:
            continue
        kept = []
        for sample in result.accepted:
            key = (sample.metric, sample.ts)
            if key in inserted_keys and key not in claimed:
                kept.append(sample)
                claimed.add(key)
            else:
                result.duplicates += 1
        result.accepted = kept
    # Rain made of counters belongs to no single message: the batch's last one reports it.
    results[-1].rejected.extend(rain_rejections)


def _insert_dead_letters(conn: Connection, message: Message, station_id: str | None, rejections: list[Rejection]) -> None:
    """Keep each rejection with the (truncated) payload, so nothing is silently dropped."""
    payload = message.payload[:DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", errors="backslashreplace")
    payload = payload.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL
    rows = [
        {
            "received_at": message.received_at,
            "source": message.source,
            "topic": message.topic[:512],
            "station_id": station_id if station_id and STATION_ID_RE.match(station_id) else None,
            "reason": rejection.reason,
            "detail": _detail(rejection).replace("\x00", "\\x00"),
            "payload": payload,
        }
        for rejection in rejections
    ]
    conn.execute(insert(dead_letters), rows)


def _detail(rejection: Rejection) -> str:
    where = " ".join(part for part in (rejection.metric and f"metric={rejection.metric}", rejection.ts and f"ts={rejection.ts}") if part)
    return f"{rejection.detail} ({where})" if where else rejection.detail
