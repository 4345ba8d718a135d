"""Storing one station's samples inside the ingest transaction: dedupe, conflicts, rain counters, state.

A sample is identified by (station, metric, ts) (spec section 1). The first value stored
wins: a sample received again with the same value is a duplicate and changes nothing; with a
different value it is a ``conflicting_duplicate`` (spec section 9) and never overwrites the
stored one. Both are found without a query per sample: the insert tells what it stored
(service/batch_insert.py), and one query per batch reads the stored values of only the samples
the insert skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts.model import Rejection, Sample
from alerts.times import rfc3339
from service.db import dialect
from service.db.schema import readings, station_state

# Keys per query when reading the stored values of skipped samples: 3 parameters each stays well
# under SQLite's and PostgreSQL's parameter limits.
CONFLICT_QUERY_KEYS = 500


@dataclasses.dataclass
class Offered:
    """The samples one message offers a station, with their index in the message's payload."""

    samples: list[Sample]
    indexes: list[int]
    kept: list[Sample] = dataclasses.field(default_factory=list)  # inserted now, on behalf of this message
    duplicates: int = 0
    conflicts: list[Rejection] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Skipped:
    """A sample the insert skipped because the database already held its (station, metric, ts)."""

    offered: Offered
    sample: Sample
    index: int


def unique(samples: Iterable[Sample]) -> list[Sample]:
    """Drop repeats of (metric, ts) inside one batch; the first wins, like the database."""
    seen: dict[tuple[str, datetime], Sample] = {}
    for sample in samples:
        seen.setdefault((sample.metric, sample.ts), sample)
    return list(seen.values())


def insert_readings(conn: Connection, samples: list[Sample], received_at: datetime, *,
                    table: sa.Table = readings, scope: Mapping = MappingProxyType({})) -> list[Sample]:
    """Insert samples, skipping ones already stored; return those inserted now.

    ``table`` and ``scope`` name another ledger with the same columns: an exercise's readings
    (``exercise_readings``, ``{"exercise_id": 7}``), whose identity also holds the scope's keys.
    """
    if not samples:
        return []
    rows = [
        {**scope, "station_id": s.station_id, "metric": s.metric, "ts": s.ts, "value": s.value,
         "received_at": received_at}
        for s in samples
    ]
    statement = dialect.insert_new(conn, table, [*scope, "station_id", "metric", "ts"]).returning(
        table.c.metric, table.c.ts)
    inserted = {(row.metric, row.ts) for row in conn.execute(statement, rows)}
    return [s for s in samples if (s.metric, s.ts) in inserted]


def assign_inserted(offers: list[Offered], offered: list[Sample], inserted: list[Sample], *,
                    all_inserted: bool) -> list[Skipped]:
    """``assign`` for one station's batch: ``offered`` its unique samples, ``all_inserted`` when each went in now."""
    if all_inserted and len(offered) == sum(len(offer.samples) for offer in offers):
        # Nothing was stored before and no message repeats another: each message keeps its own samples.
        for offer in offers:
            offer.kept.extend(offer.samples)
        return []
    return assign(offers, inserted, {(s.metric, s.ts): s.value for s in offered})


def assign(offers: list[Offered], inserted: list[Sample], winners: dict[tuple[str, datetime], float]) -> list[Skipped]:
    """Give each inserted sample to the first message that offered it; settle the rest.

    A repeat inside the batch is compared with the batch's first value (``winners``) at once;
    a sample the database already held is returned, to be compared with the stored value.
    """
    inserted_keys = {(s.metric, s.ts) for s in inserted}
    claimed: set[tuple[str, datetime]] = set()
    skipped: list[Skipped] = []
    for offer in offers:
        for sample, index in zip(offer.samples, offer.indexes):
            key = (sample.metric, sample.ts)
            if key not in inserted_keys:
                skipped.append(Skipped(offer, sample, index))
            elif key not in claimed:
                offer.kept.append(sample)
                claimed.add(key)
            else:
                settle(offer, sample, index, winners[key])
    return skipped


def settle_against_stored(conn: Connection, skipped: list[Skipped], *, table: sa.Table = readings,
                          scope: Mapping = MappingProxyType({})) -> None:
    """Compare skipped samples with the stored values, in one query per batch (chunked)."""
    keys = sorted({(s.sample.station_id, s.sample.metric, s.sample.ts) for s in skipped})
    stored: dict[tuple[str, str, datetime], float] = {}
    key_columns = sa.tuple_(table.c.station_id, table.c.metric, table.c.ts)
    for start in range(0, len(keys), CONFLICT_QUERY_KEYS):
        chunk = keys[start:start + CONFLICT_QUERY_KEYS]
        query = sa.select(table.c.station_id, table.c.metric, table.c.ts, table.c.value).where(
            key_columns.in_(chunk), *(table.c[k] == v for k, v in scope.items()))
        stored.update({(r.station_id, r.metric, r.ts): r.value for r in conn.execute(query)})
    for item in skipped:
        sample = item.sample
        value = stored.get((sample.station_id, sample.metric, sample.ts))
        # None: the row vanished since the insert (a deleted station's readings); nothing to compare.
        settle(item.offered, sample, item.index, sample.value if value is None else value)


def settle(offer: Offered, sample: Sample, index: int, first_value: float) -> None:
    """A sample whose (station, metric, ts) is taken: a duplicate, or a conflict when its value differs."""
    if sample.value == first_value:
        offer.duplicates += 1
        return
    ts = rfc3339(sample.ts)
    offer.conflicts.append(Rejection(
        "conflicting_duplicate",
        f"{sample.metric} at {ts} is already stored as {first_value:g}; {sample.value:g} is not kept",
        metric=sample.metric, ts=ts, index=index))


def rain_from_tips(samples: list[Sample], counter: dict | None, mm_per_tip: float,
                   bounds: tuple[float, float] | None):
    """Turn cumulative tip counters into rainfall increments (mm) since the newest known counter.

    A counter older than the newest one carries no new rain (the later difference
    already counted it); a counter that went down is a reset, and its value is the
    tips since the reset.
    """
    tips = sorted((s for s in samples if s.metric == "rain_tips"), key=lambda s: s.ts)
    last_ts = datetime.fromisoformat(counter["ts"]) if counter else None
    last_count = counter["count"] if counter else None
    rain: list[Sample] = []
    rejections: list[Rejection] = []
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


def lock_station_state(conn: Connection, station_id: str, now: datetime) -> dict:
    """Return the station's state row, creating it; on PostgreSQL the row stays locked until commit.

    The row lock keeps one station's rule state consistent when two instances
    ingest samples of the same station at once (SQLite serialises every writer).
    """
    query = dialect.locked(sa.select(station_state).where(station_state.c.station_id == station_id), conn)
    row = conn.execute(query).first()
    if row is not None:
        return dict(row._mapping)
    conn.execute(dialect.insert_new(conn, station_state, ["station_id"])
                 .values(station_id=station_id, level="normal", online=True, latest={}, updated_at=now))
    return dict(conn.execute(query).first()._mapping)


def is_news(state: dict, received_at: datetime) -> bool:
    """True unless the station was already heard after ``received_at`` (a replay of old dead letters)."""
    return state.get("last_seen") is None or received_at >= state["last_seen"]


def station_state_values(state: dict, inserted: list[Sample], received_at: datetime, counter: dict | None) -> dict:
    """The newest value of each metric, when the station was last heard, and its tip counter.

    ``last_seen`` never goes back: samples received before it (replayed) change no liveness.
    """
    latest = dict(state.get("latest") or {})
    newest: dict[str, Sample] = {}
    for sample in inserted:  # the newest of each metric first: one comparison with the stored one per metric
        if sample.metric not in newest or newest[sample.metric].ts < sample.ts:
            newest[sample.metric] = sample
    for metric, sample in newest.items():
        known = latest.get(metric)
        if known is None or datetime.fromisoformat(known["ts"]) < sample.ts:
            latest[metric] = {"value": sample.value, "ts": sample.ts.isoformat()}
    values = {"latest": latest, "updated_at": max(received_at, state.get("updated_at") or received_at)}
    if is_news(state, received_at):
        values.update(last_seen=received_at, online=True)
    if counter is not None:
        values["rain_counter"] = counter
    return values
