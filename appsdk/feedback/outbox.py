"""The durable feedback outbox: SQLite in WAL mode, one row per score id.

A submission is committed here before anything is sent, so neither an outage nor a crash
loses it. Rows move pending -> delivered, or -> rejected (with the reason) when Langfuse
refuses an item for good. The first timestamp of an id is kept, so a resubmission (same id,
same timestamp) upserts in Langfuse instead of duplicating.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appsdk.sqlite import open_database

__all__ = ["Outbox", "OutboxItem"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
"""


@dataclass(frozen=True)
class OutboxItem:
    id: str
    payload: dict[str, Any]
    attempts: int


class Outbox:
    """Pending, delivered and rejected scores in one SQLite file (processes may share it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # FULL: a rating is on disk before submit() returns, even across a power cut.
        self._conn = open_database(self.path, _SCHEMA, what="feedback outbox", synchronous="FULL")

    def put(self, item_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store (or replace) a score; keeps the first timestamp of this id. Returns the row."""
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT payload FROM outbox WHERE id = ?", (item_id,)
                ).fetchone()
                if row is not None:
                    payload = {**payload, "timestamp": json.loads(row[0])["timestamp"]}
                self._conn.execute(
                    "INSERT OR REPLACE INTO outbox VALUES (?, ?, 'pending', 0, ?, NULL, ?, ?)",
                    (item_id, json.dumps(payload), now, now, now),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return payload

    def due(self, limit: int) -> list[OutboxItem]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, payload, attempts FROM outbox WHERE state = 'pending' "
                "AND next_attempt <= ? ORDER BY created LIMIT ?",
                (time.time(), limit),
            ).fetchall()
        return [OutboxItem(r[0], json.loads(r[1]), r[2]) for r in rows]

    def next_due_in(self) -> float | None:
        """Seconds until the next pending item is due (0 if now), None if none is pending."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE state = 'pending'"
            ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - time.time())

    def _set(self, ids: list[str], state: str, error: str | None, delay: float) -> None:
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                "last_error = ?, updated = ? WHERE id = ?",
                [(state, now + delay, error, now, i) for i in ids],
            )

    def delivered(self, ids: list[str]) -> None:
        self._set(ids, "delivered", None, 0)

    def rejected(self, ids: list[str], reason: str) -> None:
        self._set(ids, "rejected", reason, 0)

    def retry_later(self, ids: list[str], reason: str, delay: float) -> None:
        self._set(ids, "pending", reason, delay)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state"
            ).fetchall()
        return {"pending": 0, "delivered": 0, "rejected": 0, **{r[0]: r[1] for r in rows}}

    def rejections(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, last_error FROM outbox WHERE state = 'rejected'"
            ).fetchall()
        return [(r[0], r[1] or "") for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
