"""Drill readings (spec section 10): ``{prefix}/exercise/stations/{id}/readings`` into one exercise's own tables.

A separate step beside the real ingest (``service.ingest.Ingestor`` hands these messages
here): the payload is parsed by the same parser with the same station configuration, and
duplicates and conflicts are settled by the same code (``service.samples``), but the samples
go to ``exercise_readings``, are judged from ``exercise_state`` and raise alerts of the
exercise's scope. Real readings, ``station_state`` and real alerts are never touched. A
station no running exercise covers gets a dead letter ``no_active_exercise``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.model import Rejection
from sensors import topics
from service import alerting, dead_letters, exercises, samples
from service.db import dialect
from service.db.schema import exercise_readings, exercise_state
from service.ingest_messages import IngestResult, Message, database_unavailable, dead_letter
from service.samples import Offered
from service.station_rules import station_rules

log = logging.getLogger(__name__)


class ExerciseIngest:
    """Stores and judges the messages of the exercise topics; built by (and for) the ``Ingestor``."""

    def __init__(self, ingestor) -> None:
        self.ingestor = ingestor
        self.shared = ingestor.shared
        self.prefix = topics.normalize_prefix(ingestor.topic_prefix)

    def claims(self, topic: str) -> bool:
        """True for a message of an exercise topic."""
        return topic.startswith(f"{self.prefix}/exercise/")

    def ingest_alongside(self, messages: list[Message], ingest_real) -> list[IngestResult]:
        """Ingest a batch holding exercise messages: the real ones by ``ingest_real``, the rest here; results in order."""
        drills = [i for i, message in enumerate(messages) if self.claims(message.topic)]
        real = [i for i, message in enumerate(messages) if not self.claims(message.topic)]
        results: list[IngestResult | None] = [None] * len(messages)
        if real:
            for i, result in zip(real, ingest_real([messages[i] for i in real])):
                results[i] = result
        for i, result in zip(drills, self.ingest([messages[i] for i in drills])):
            results[i] = result
        return results

    def ingest(self, messages: list[Message]) -> list[IngestResult]:
        """Store and judge exercise messages in one transaction; a message that fails alone is dead-lettered."""
        try:
            results = self._committed(messages)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            results = [self._alone(message) for message in messages]
        self.ingestor.count_results(results, messages)
        if any(result.events for result in results):
            self.ingestor.wake.events_recorded()
        return results

    def _committed(self, messages: list[Message]) -> list[IngestResult]:
        with self.shared.engine.begin() as conn:
            results, dead_bytes = self._batch(conn, messages)
        self.ingestor.dead_letter_cap.written(dead_bytes)
        return results

    def _alone(self, message: Message) -> IngestResult:
        try:
            return self._committed([message])[0]
        except Exception as exc:
            if database_unavailable(exc):
                raise
            return self.ingestor.dead_letter_failed(message, exc)

    def _batch(self, conn: Connection, messages: list[Message]) -> tuple[list[IngestResult], int]:
        covered = exercises.open_by_station(conn)
        results: list[IngestResult] = []
        by_drill: dict[tuple[int, str], list[IngestResult]] = defaultdict(list)
        received: dict[tuple[int, str], datetime] = {}
        for message in messages:
            station_id = topics.parse_exercise_readings_topic(self.prefix, message.topic)
            exercise = covered.get(station_id)
            if exercise is None or not exercise.started_at <= message.received_at < exercise.until:
                results.append(IngestResult(station_id=station_id, rejected=[Rejection(
                    "no_active_exercise", "no running exercise covers this station; start one with POST /exercises")]))
                continue
            result = self.ingestor.parse_message(conn, dataclasses.replace(message, station_id=station_id))
            results.append(result)
            if result.accepted:
                by_drill[(exercise.id, station_id)].append(result)
                received[(exercise.id, station_id)] = message.received_at
        for key, drill_results in sorted(by_drill.items()):
            self._store(conn, *key, drill_results, received[key])
        rows = [dead_letter(message, result.station_id, result.rejected)
                for message, result in zip(messages, results) if result.rejected and not message.replay]
        return results, dead_letters.insert(conn, rows)

    def _store(self, conn: Connection, exercise_id: int, station_id: str, results: list[IngestResult],
               received_at: datetime) -> None:
        """Insert one station's drill samples, settle duplicates, judge them with the exercise's own state."""
        station = self.ingestor.known_station(conn, station_id)
        ledger = {"table": exercise_readings, "scope": {"exercise_id": exercise_id}}
        state = _lock_state(conn, exercise_id, station_id, received_at)
        offers = [Offered(result.accepted, result.indexes) for result in results]
        offered = samples.unique(s for offer in offers for s in offer.samples)
        rain, rain_rejections, counter = samples.rain_from_tips(
            offered, state.get("rain_counter"), station.row.get("mm_per_tip") or 0.0,
            station.info.plausible.get("rainfall"))
        inserted = samples.insert_readings(conn, offered + rain, received_at, **ledger)
        skipped = samples.assign(offers, inserted, {(s.metric, s.ts): s.value for s in offered})
        if skipped:
            samples.settle_against_stored(conn, skipped, **ledger)
        for result, offer in zip(results, offers):
            result.accepted, result.duplicates = offer.kept, offer.duplicates
            result.rejected.extend(offer.conflicts)
        results[-1].rejected.extend(rain_rejections)
        values = samples.station_state_values(state, inserted, received_at, counter)
        values.pop("online")  # a drill says nothing about whether the station is really online
        judged = [s for s in inserted if s.metric != "rain_tips"]
        if judged:
            judgement, events = alerting.judge_and_record(
                conn, station_id, station_rules(station.row), state["engine"], judged, received_at,
                exercises.scope(exercise_id), expected_interval_s=station.row.get("expected_interval_s"))
            values.update(engine=judgement.state, level=judgement.level.label)
            results[-1].events.extend(events)
        conn.execute(sa.update(exercise_state).where(exercise_state.c.exercise_id == exercise_id,
                                                     exercise_state.c.station_id == station_id).values(**values))


def _lock_state(conn: Connection, exercise_id: int, station_id: str, now: datetime) -> dict:
    """The station's state row in the exercise, created if new; locked until commit on PostgreSQL."""
    query = dialect.locked(sa.select(exercise_state).where(exercise_state.c.exercise_id == exercise_id,
                                                           exercise_state.c.station_id == station_id), conn)
    row = conn.execute(query).first()
    if row is None:
        conn.execute(dialect.insert_new(conn, exercise_state, ["exercise_id", "station_id"])
                     .values(exercise_id=exercise_id, station_id=station_id, latest={}, updated_at=now))
        row = conn.execute(query).first()
    return dict(row._mapping)
