"""The on-disk spool: batches a backend could not take now, kept until it can.

Each row is one export request body (OTLP protobuf, already through the egress policy), keyed
by the exporter it belongs to (its name and endpoint, so another configuration never gets it).
Batches are drained oldest first. A batch the backend rejected for good (400, 401, 403, 413)
is kept with the reason and not retried. Size and age bounds evict the oldest rows; every
eviction is counted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appsdk.sqlite import open_database

__all__ = ["Spool", "SpoolStatus", "SpooledBatch", "exporter_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exporter TEXT NOT NULL,
    created REAL NOT NULL,
    spans INTEGER NOT NULL,
    size INTEGER NOT NULL,
    rejected TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_by_exporter ON spool (exporter, rejected, id);
CREATE INDEX IF NOT EXISTS spool_by_age ON spool (created);
"""


def exporter_key(name: str, endpoint: str) -> str:
    """The spool's key for one exporter: its name and a digest of where it sends."""
    return f"{name}:{hashlib.sha256(endpoint.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class SpooledBatch:
    id: int
    spans: int
    body: bytes


@dataclass(frozen=True)
class SpoolStatus:
    """What one exporter has in the spool."""

    exporter: str
    batches: int
    spans: int
    bytes: int
    oldest_age_s: float | None
    rejected: list[tuple[int, str]]


class Spool:
    """A SQLite file of pending export bodies, shared by every exporter of a process.

    Args:
        path: the file (``APPSDK_SPOOL_PATH``, default ``.appsdk/spool.db``).
        max_bytes: total size bound; the oldest batches are evicted beyond it.
        max_age_s: batches older than this are evicted.
        on_evict: called with (exporter key, spans) for every eviction, to count it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 24 * 3600,
        on_evict: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        # NORMAL: a killed process loses nothing; only a power cut may lose the last batch.
        self._conn = open_database(self.path, _SCHEMA, what="export spool")

    def put(self, exporter: str, body: bytes, spans: int, rejected: str | None = None) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO spool (exporter, created, spans, size, rejected, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (exporter, self._clock(), spans, len(body), rejected, body),
            )
        self._enforce_bounds()

    def _enforce_bounds(self) -> None:
        with self._lock:
            cutoff = self._clock() - self.max_age_s
            old = self._conn.execute(
                "SELECT id, exporter, spans FROM spool WHERE created < ?", (cutoff,)
            ).fetchall()
            total = self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()[0]
            evicted = list(old)
            if total > self.max_bytes:
                excess = total - self.max_bytes
                for row_id, exporter, spans, size in self._conn.execute(
                    "SELECT id, exporter, spans, size FROM spool ORDER BY id"
                ):
                    if excess <= 0:
                        break
                    if all(row_id != e[0] for e in evicted):
                        evicted.append((row_id, exporter, spans))
                    excess -= size
            if evicted:
                self._conn.executemany("DELETE FROM spool WHERE id = ?", [(e[0],) for e in evicted])
        for _, exporter, spans in evicted:
            if self._on_evict is not None:
                self._on_evict(exporter, spans)

    def oldest(self, exporter: str, limit: int = 1) -> list[SpooledBatch]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, spans, body FROM spool WHERE exporter = ? AND rejected IS NULL "
                "ORDER BY id LIMIT ?",
                (exporter, limit),
            ).fetchall()
        return [SpooledBatch(r[0], r[1], r[2]) for r in rows]

    def remove(self, batch_id: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE id = ?", (batch_id,))

    def reject(self, batch_id: int, reason: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE spool SET rejected = ? WHERE id = ?", (reason, batch_id))

    def pending(self, exporter: str) -> int:
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM spool WHERE exporter = ? AND rejected IS NULL",
                    (exporter,),
                ).fetchone()[0]
            )

    def pending_spans(self, exporter: str) -> int:
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COALESCE(SUM(spans), 0) FROM spool "
                    "WHERE exporter = ? AND rejected IS NULL",
                    (exporter,),
                ).fetchone()[0]
            )

    def status(self) -> list[SpoolStatus]:
        """Per exporter key: pending batches, spans, bytes, oldest age, and rejections."""
        now = self._clock()
        with self._lock:
            rows = self._conn.execute(
                "SELECT exporter, COUNT(*), SUM(spans), SUM(size), MIN(created) FROM spool "
                "WHERE rejected IS NULL GROUP BY exporter"
            ).fetchall()
            rejected = self._conn.execute(
                "SELECT exporter, id, rejected FROM spool WHERE rejected IS NOT NULL"
            ).fetchall()
        by_exporter = {r[0]: r for r in rows}
        names = sorted(set(by_exporter) | {r[0] for r in rejected})
        result = []
        for name in names:
            row = by_exporter.get(name)
            result.append(
                SpoolStatus(
                    exporter=name,
                    batches=row[1] if row else 0,
                    spans=row[2] if row else 0,
                    bytes=row[3] if row else 0,
                    oldest_age_s=(now - row[4]) if row else None,
                    rejected=[(r[1], r[2]) for r in rejected if r[0] == name],
                )
            )
        return result

    def total_bytes(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
