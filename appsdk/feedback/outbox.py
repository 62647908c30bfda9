"""The durable feedback outbox: SQLite in WAL mode, one row per score id and destination.

A submission is committed here before anything is sent, so neither an outage nor a crash
loses it. Rows move pending -> delivered, or -> rejected (with the reason) when Langfuse
refuses an item for good. The first timestamp of an id is kept, so a resubmission (same id,
same timestamp) upserts in Langfuse instead of duplicating.

Every row carries the identity of the Langfuse project it was submitted for (a salted hash of
its URL and keys, see :class:`appsdk.spool.Destination`), and an outbox only ever reads,
counts and delivers the rows of its own destination: Langfuse Cloud projects share one URL,
so a rating left pending by project A is never delivered with project B's keys. Rows from an
older appsdk carry no identity and are never delivered; :func:`outbox_status` shows them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appsdk.errors import StoreError
from appsdk.spool import Destination, IdentityHasher
from appsdk.sqlite import open_database

__all__ = ["Outbox", "OutboxItem", "OutboxStatus", "outbox_status"]

_TABLE = """
CREATE TABLE IF NOT EXISTS outbox (
    identity TEXT NOT NULL,
    id TEXT NOT NULL,
    destination TEXT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (identity, id)
);
"""
_SCHEMA = _TABLE + "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
_INDEX = "CREATE INDEX IF NOT EXISTS outbox_due_for ON outbox (identity, state, next_attempt)"
_COLUMNS = "id, payload, state, attempts, next_attempt, last_error, created, updated"


def _upgrade(connection: sqlite3.Connection) -> None:
    """Rebuild an older appsdk's outbox (keyed by id alone) with an identity column.

    Its rows get the empty identity, which no destination has: they stay, never delivered.
    """
    columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
    if "identity" in columns:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(outbox)")}
        if "identity" not in columns:  # another process may have upgraded it meanwhile
            connection.execute("ALTER TABLE outbox RENAME TO outbox_before_identity")
            connection.execute(_TABLE)
            connection.execute(
                f"INSERT INTO outbox (identity, {_COLUMNS}) "
                f"SELECT '', {_COLUMNS} FROM outbox_before_identity"
            )
            connection.execute("DROP TABLE outbox_before_identity")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _open(path: Path) -> sqlite3.Connection:
    # FULL: a rating is on disk before submit() returns, even across a power cut.
    connection = open_database(path, _SCHEMA, what="feedback outbox", synchronous="FULL")
    try:
        _upgrade(connection)
        connection.execute("DROP INDEX IF EXISTS outbox_due")
        connection.execute(_INDEX)
    except sqlite3.Error as exc:
        connection.close()
        raise StoreError(f"cannot upgrade the feedback outbox at {path}: {exc}") from exc
    return connection


@dataclass(frozen=True)
class OutboxItem:
    id: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class OutboxStatus:
    """Scores in the outbox for one destination, by state.

    ``current`` says whether it is the destination given to :func:`outbox_status`, the only
    one a feedback client of that configuration delivers to.
    """

    identity: str
    destination: str
    current: bool
    pending: int
    delivered: int
    rejected: int


class Outbox:
    """Pending, delivered and rejected scores of one destination, in a SQLite file that
    processes (and destinations) may share.

    Args:
        path: the file.
        destination: the Langfuse project this outbox stores and delivers for.
    """

    def __init__(self, path: str | Path, *, destination: Destination) -> None:
        self.path = Path(path)
        self.destination = destination
        self._lock = threading.Lock()
        self._conn = _open(self.path)
        self._identity = IdentityHasher(self._conn).identity(destination)

    def put(self, item_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store (or replace) a score; keeps the first timestamp of this id. Returns the row."""
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT payload FROM outbox WHERE identity = ? AND id = ?",
                    (self._identity, item_id),
                ).fetchone()
                if row is not None:
                    payload = {**payload, "timestamp": json.loads(row[0])["timestamp"]}
                self._conn.execute(
                    f"INSERT OR REPLACE INTO outbox (identity, destination, {_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, 'pending', 0, ?, NULL, ?, ?)",
                    (
                        self._identity,
                        self.destination.label,
                        item_id,
                        json.dumps(payload),
                        now,
                        now,
                        now,
                    ),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return payload

    def due(self, limit: int) -> list[OutboxItem]:
        """The oldest pending items of this destination that are due now."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, payload, attempts FROM outbox WHERE identity = ? "
                "AND state = 'pending' AND next_attempt <= ? ORDER BY created LIMIT ?",
                (self._identity, time.time(), limit),
            ).fetchall()
        return [OutboxItem(r[0], json.loads(r[1]), r[2]) for r in rows]

    def next_due_in(self) -> float | None:
        """Seconds until the next pending item is due (0 if now), None if none is pending."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE identity = ? AND state = 'pending'",
                (self._identity,),
            ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - time.time())

    def _set(self, ids: list[str], state: str, error: str | None, delay: float) -> None:
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                "last_error = ?, updated = ? WHERE identity = ? AND id = ?",
                [(state, now + delay, error, now, self._identity, i) for i in ids],
            )

    def delivered(self, ids: list[str]) -> None:
        self._set(ids, "delivered", None, 0)

    def rejected(self, ids: list[str], reason: str) -> None:
        self._set(ids, "rejected", reason, 0)

    def retry_later(self, ids: list[str], reason: str, delay: float) -> None:
        self._set(ids, "pending", reason, delay)

    def counts(self) -> dict[str, int]:
        """This destination's items by state (other destinations': :func:`outbox_status`)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE identity = ? GROUP BY state",
                (self._identity,),
            ).fetchall()
        return {"pending": 0, "delivered": 0, "rejected": 0, **{r[0]: r[1] for r in rows}}

    def rejections(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, last_error FROM outbox WHERE identity = ? AND state = 'rejected'",
                (self._identity,),
            ).fetchall()
        return [(r[0], r[1] or "") for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def outbox_status(path: str | Path, current: Iterable[Destination] = ()) -> list[OutboxStatus]:
    """Per destination in the outbox at ``path``: scores pending, delivered and rejected.

    Args:
        current: the running configuration's destination(s); their rows say ``current``.

    Raises:
        StoreError: the file cannot be opened.
    """
    connection = _open(Path(path))
    try:
        hasher = IdentityHasher(connection)
        mine = {hasher.identity(d) for d in current}
        rows = connection.execute(
            "SELECT identity, MAX(destination), SUM(state = 'pending'), "
            "SUM(state = 'delivered'), SUM(state = 'rejected') FROM outbox GROUP BY identity"
        ).fetchall()
    finally:
        connection.close()
    found = [
        OutboxStatus(
            identity=identity,
            destination=label
            or "langfuse (submitted by an older appsdk, which kept no destination identity)",
            current=identity in mine,
            pending=int(pending),
            delivered=int(delivered),
            rejected=int(rejected),
        )
        for identity, label, pending, delivered, rejected in rows
    ]
    return sorted(found, key=lambda s: (not s.current, s.destination, s.identity))
