"""Dead letters: one row per rejected payload, kept whole, in a table that cannot fill the disk.

Spec section 9: a payload with 25,000 bad samples is one row listing its first 1,000
rejections ``{index, metric, reason, detail}``, with the payload (at most 256 KiB) kept whole
so that ``ews dead-letters replay`` can ingest it again. ``EWS_DEAD_LETTER_MAX_MB`` caps the
table: past it the oldest rows go first, counted in ``ews_dead_letters_dropped_total``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts.model import Rejection
from sensors.payload import MAX_PAYLOAD_BYTES
from service.db.schema import dead_letters

log = logging.getLogger(__name__)

MAX_REJECTIONS = 1000  # listed per dead letter; rejected_count counts them all
MAX_PAYLOAD_CHARS = MAX_PAYLOAD_BYTES  # escaped undecodable bytes take more room: cut there (truncated)
MAX_DETAIL_CHARS = 200
ROW_OVERHEAD_BYTES = 200  # the columns besides payload and rejections, and the row's own overhead
CAP_PAGE = 1000  # rows read per step while finding how many of the oldest to drop


def _clean(text: str | None, limit: int | None = None) -> str | None:
    """Text PostgreSQL can store: no NUL, no lone surrogates (both come from hostile JSON strings)."""
    if text is None:
        return None
    cleaned = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return cleaned if limit is None else cleaned[:limit]


def payload_text(payload: bytes) -> tuple[str, bool]:
    """The payload as stored text and whether it is cut: valid UTF-8 JSON is kept byte for byte."""
    text = payload[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    truncated = len(payload) > MAX_PAYLOAD_BYTES or len(text) > MAX_PAYLOAD_CHARS
    return text[:MAX_PAYLOAD_CHARS], truncated


def rejection_item(rejection: Rejection) -> dict:
    """One listed rejection: ``{index, metric, reason, detail}`` (and ``ts`` when known)."""
    item = {"index": rejection.index, "metric": _clean(rejection.metric, 64), "reason": rejection.reason,
            "detail": _clean(rejection.detail, MAX_DETAIL_CHARS)}
    if rejection.ts:
        item["ts"] = _clean(rejection.ts, 64)
    return item


def first_detail(rejections: Sequence[Rejection]) -> str:
    """The first rejection's detail with where it happened, and how many more there are."""
    first = rejections[0]
    where = " ".join(part for part in (first.metric and f"metric={first.metric}", first.ts and f"ts={first.ts}",
                                       first.index is not None and f"index={first.index}") if part)
    text = f"{first.detail} ({where})" if where else first.detail
    if len(rejections) > 1:
        text += f"; {len(rejections) - 1} more rejection(s)"
    return _clean(text, 2000)


def row(*, received_at: datetime, source: str, topic: str, station_id: str | None, payload: bytes,
        rejections: Sequence[Rejection]) -> dict:
    """The dead_letters row for one rejected payload (``rejections`` non-empty)."""
    text, truncated = payload_text(payload)
    listed = [rejection_item(r) for r in rejections[:MAX_REJECTIONS]]
    reasons = list(dict.fromkeys(r.reason for r in rejections))
    size = len(text.encode("utf-8")) + len(json.dumps(listed)) + ROW_OVERHEAD_BYTES
    return {
        "received_at": received_at,
        "source": source,
        "topic": _clean(topic, 512),
        "station_id": station_id,
        "reason": rejections[0].reason,
        "detail": first_detail(rejections),
        "payload": text,
        "rejections": listed,
        "rejected_count": len(rejections),
        "reasons": " " + " ".join(reasons)[:398] + " ",
        "payload_bytes": len(payload),
        "truncated": truncated,
        "size_bytes": size,
    }


def insert(conn: Connection, rows: list[dict]) -> int:
    """Insert dead letters; return the bytes they count against the cap."""
    if not rows:
        return 0
    conn.execute(sa.insert(dead_letters), rows)
    return sum(r["size_bytes"] for r in rows)


def reason_filter(reason: str):
    """The WHERE clause of "has a rejection with ``reason``" (any of a payload's reasons)."""
    escaped = reason.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return dead_letters.c.reasons.like(f"% {escaped} %", escape="\\")


def enforce_cap(engine: Engine, max_bytes: int) -> tuple[int, int]:
    """Drop the oldest dead letters until the table holds at most ``max_bytes``; return (rows, bytes) dropped."""
    d = dead_letters
    with engine.begin() as conn:
        total = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(d.c.size_bytes), 0))).scalar_one())
        excess = total - max_bytes
        if excess <= 0:
            return 0, 0
        freed, cutoff = 0, None
        while freed < excess:
            page = conn.execute(sa.select(d.c.id, d.c.size_bytes).where(d.c.id > (cutoff or 0))
                                .order_by(d.c.id).limit(CAP_PAGE)).all()
            if not page:
                break
            for row_ in page:
                freed += row_.size_bytes
                cutoff = row_.id
                if freed >= excess:
                    break
        dropped = conn.execute(sa.delete(d).where(d.c.id <= cutoff)).rowcount if cutoff is not None else 0
    return dropped, freed


class DeadLetterCap:
    """Keeps the table under ``EWS_DEAD_LETTER_MAX_MB`` without a SUM after every insert.

    Every instance counts the bytes it wrote; past ``check_every`` (a 64th of the cap, at most
    4 MiB) it sums the table and drops the oldest rows over one ``check_every`` under the cap. So
    the writes until its next check fit under the cap; with several writing instances the table can
    pass the cap by their concurrent writes, briefly.
    """

    def __init__(self, engine: Engine, max_bytes: int, metrics) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.check_every = max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 64))  # EWS_DEAD_LETTER_MAX_MB >= 1
        self._written = self.check_every  # check at the first write after start
        self._lock = threading.Lock()

    def written(self, nbytes: int) -> None:
        """Note ``nbytes`` of dead letters committed; enforce the cap when enough has been written."""
        if nbytes <= 0:
            return
        with self._lock:
            self._written += nbytes
            due = self._written >= self.check_every
            if due:
                self._written = 0
        if due:
            self.enforce()

    def enforce(self) -> int:
        """Drop the oldest rows over the cap now; return how many went."""
        try:
            # One step under the cap: the writes until the next check then fit under it.
            rows, freed = enforce_cap(self.engine, self.max_bytes - self.check_every)
        except sa.exc.DBAPIError:
            log.warning("dead letters: could not enforce EWS_DEAD_LETTER_MAX_MB now; will retry", exc_info=True)
            with self._lock:
                self._written = self.check_every
            return 0
        if rows:
            self.metrics.dead_letters_dropped.inc(rows)
            log.warning("dead letters over EWS_DEAD_LETTER_MAX_MB (%d MB): dropped the %d oldest (%d bytes)",
                        self.max_bytes // (1024 * 1024), rows, freed)
        return rows
