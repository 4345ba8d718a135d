"""The gateway's durable outbox: a SQLite queue a sample is written to before anything else."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from sensors import topics
from sensors.gateway.lines import now_ts


class Queue:
    """The durable outbox: samples in arrival order, plus a few counters (seq, source offsets)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed sample survives a power cut, not only a process crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " station_id TEXT NOT NULL, body TEXT NOT NULL, queued_at TEXT NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def position(self, source_key: str) -> int:
        """How far into ``source_key`` (a file) the queue has read, in bytes."""
        with self._lock:
            value = self._meta(f"pos:{source_key}")
        return int(value) if value else 0

    def add(self, samples: list[tuple[str, dict[str, Any]]], position: tuple[str, int] | None = None) -> None:
        """Store samples (numbering those without ``seq``) and the source position, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._meta("seq") or 0)
                now = now_ts()
                for station, sample in samples:
                    if "seq" not in sample:
                        seq += 1
                        sample = {"ts": sample["ts"], "seq": seq, "values": sample["values"]}
                    self._db.execute(
                        "INSERT INTO queue (station_id, body, queued_at) VALUES (?, ?, ?)",
                        (station, topics.encode_sample(sample).decode("utf-8"), now),
                    )
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
                if position is not None:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"pos:{position[0]}", str(position[1])))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` queued rows with an id above ``last_id``, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT id, station_id, body FROM queue WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()

    def delete(self, ids: list[int]) -> None:
        """Forget rows the broker has acknowledged."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def newest_id(self) -> int:
        """The id of the newest queued row (0 when the queue is empty)."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM queue").fetchone()[0]

    def count(self) -> int:
        """Rows waiting for an acknowledgement."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
