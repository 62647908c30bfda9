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

Processes (and clients) sharing a file claim the rows they send with a lease: the claimer's
id and an expiry, taken in one write transaction, so each rating is POSTed once in the normal
case. A claimer that dies loses its claims when the lease runs out, or at once when it ran on
this machine and its process is gone (a restart after a SIGKILL need not wait for the lease).
Every change a delivery makes is conditional on still holding the claim on the same revision
of the row: a rating resubmitted while its older version is in flight stays pending, and is
sent again once that request ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appsdk.errors import StoreError
from appsdk.spool import Destination, IdentityHasher
from appsdk.sqlite import add_columns, keep_private, open_database

__all__ = ["Outbox", "OutboxItem", "OutboxStatus", "has_pending", "outbox_status"]

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
    revision INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    claim_expires REAL,
    PRIMARY KEY (identity, id)
);
"""
_SCHEMA = _TABLE + "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_due_for ON outbox (identity, state, next_attempt)",
    # has_pending() runs at every configure(): it must not scan years of delivered rows.
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state) WHERE state = 'pending'",
)
_COLUMNS = "id, payload, state, attempts, next_attempt, last_error, created, updated"
_CLAIM_COLUMNS = (
    "revision INTEGER NOT NULL DEFAULT 0",
    "claimed_by TEXT",
    "claim_expires REAL",
)


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
        add_columns(connection, "outbox", _CLAIM_COLUMNS)
        connection.execute("DROP INDEX IF EXISTS outbox_due")
        for index in _INDEXES:
            connection.execute(index)
    except sqlite3.Error as exc:
        connection.close()
        raise StoreError(f"cannot upgrade the feedback outbox at {path}: {exc}") from exc
    return connection


def has_pending(path: str | Path) -> bool:
    """Whether the outbox at ``path`` holds any pending row, for any destination.

    Cheap (no identity hash, nothing created): it decides whether a starting process needs a
    feedback worker at all. A file it cannot read counts as pending, so nothing is skipped.
    """
    path = Path(path)
    if not path.exists():
        return False
    keep_private(path)  # an older appsdk's file: reading it may create -wal and -shm
    try:
        connection = sqlite3.connect(path, timeout=2.0)
    except sqlite3.Error:
        return True
    try:
        row = connection.execute("SELECT 1 FROM outbox WHERE state = 'pending' LIMIT 1").fetchone()
    except sqlite3.OperationalError as exc:
        return "no such table" not in str(exc)
    except sqlite3.Error:
        return True
    finally:
        connection.close()
    return row is not None


# -- who holds a claim ---------------------------------------------------------------------


def _machine() -> str:
    """This machine and PID namespace, hashed: a claimer's pid means something only there."""
    facts = [socket.gethostname()]
    for read, source in (
        (lambda p: Path(p).read_text(), "/proc/sys/kernel/random/boot_id"),
        (os.readlink, "/proc/self/ns/pid"),
    ):
        try:
            facts.append(read(source))
        except OSError:
            facts.append("")
    return hashlib.sha256("\x1f".join(f.strip() for f in facts).encode()).hexdigest()[:16]


_MACHINE = _machine()


def _new_claimer() -> str:
    return f"{_MACHINE}:{os.getpid()}:{secrets.token_hex(4)}"


def _process_gone(pid: int) -> bool:
    """True only when ``pid`` certainly no longer runs (a zombie has finished too)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, as another user
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] in ("Z", "X")


def _claimer_gone(claimer: str) -> bool:
    """A claim by a process of this machine that no longer exists: free to take at once.

    Anything else (another machine, another PID namespace, an unknown format, a pid that may
    have been reused) waits for its lease: a false "gone" would only cost a duplicate POST,
    which upserts, but the lease is the rule and this the shortcut.
    """
    parts = claimer.split(":")
    if len(parts) != 3 or parts[0] != _MACHINE or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    return pid != os.getpid() and _process_gone(pid)


@dataclass(frozen=True)
class OutboxItem:
    id: str
    payload: dict[str, Any]
    attempts: int
    revision: int = 0


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
        self.claimer = _new_claimer()
        self._lock = threading.Lock()
        self._conn = _open(self.path)
        self._identity = IdentityHasher(self._conn).identity(destination)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: taken at once, so claims of two processes never overlap."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def put(self, item_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store (or replace) a score; keeps the first timestamp of this id. Returns the row.

        A replacement is a new revision, pending and due now; a claim on the row is kept, so
        the new version is not sent while the old one is still in flight.
        """
        now = time.time()
        with self._write() as db:
            row = db.execute(
                "SELECT payload FROM outbox WHERE identity = ? AND id = ?",
                (self._identity, item_id),
            ).fetchone()
            if row is not None:
                payload = {**payload, "timestamp": json.loads(row[0])["timestamp"]}
                db.execute(
                    "UPDATE outbox SET destination = ?, payload = ?, state = 'pending', "
                    "attempts = 0, next_attempt = ?, last_error = NULL, updated = ?, "
                    "revision = revision + 1 WHERE identity = ? AND id = ?",
                    (
                        self.destination.label,
                        json.dumps(payload),
                        now,
                        now,
                        self._identity,
                        item_id,
                    ),
                )
            else:
                db.execute(
                    f"INSERT INTO outbox (identity, destination, {_COLUMNS}) "
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
        return payload

    def claim(self, limit: int, lease_s: float) -> list[OutboxItem]:
        """Take up to ``limit`` of the oldest due, unclaimed rows for ``lease_s`` seconds.

        Claims whose lease ran out, and claims of processes of this machine that are gone,
        are taken over.
        """
        now = time.time()
        with self._write() as db:
            holders = db.execute(
                "SELECT DISTINCT claimed_by FROM outbox WHERE identity = ? AND state = "
                "'pending' AND claimed_by IS NOT NULL AND claim_expires > ?",
                (self._identity, now),
            ).fetchall()
            gone = [h[0] for h in holders if h[0] != self.claimer and _claimer_gone(h[0])]
            db.executemany(
                "UPDATE outbox SET claimed_by = NULL, claim_expires = NULL "
                "WHERE identity = ? AND claimed_by = ?",
                [(self._identity, holder) for holder in gone],
            )
            rows = db.execute(
                "SELECT id, payload, attempts, revision FROM outbox WHERE identity = ? "
                "AND state = 'pending' AND next_attempt <= ? "
                "AND (claimed_by IS NULL OR claim_expires <= ?) ORDER BY created LIMIT ?",
                (self._identity, now, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET claimed_by = ?, claim_expires = ? WHERE identity = ? AND id = ?",
                [(self.claimer, now + lease_s, self._identity, r[0]) for r in rows],
            )
        return [OutboxItem(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def renew(self, items: Iterable[OutboxItem], lease_s: float) -> None:
        """Extend this claimer's lease on ``items`` (before each request of a long split)."""
        expires = time.time() + lease_s
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET claim_expires = ? "
                "WHERE identity = ? AND id = ? AND claimed_by = ?",
                [(expires, self._identity, i.id, self.claimer) for i in items],
            )

    def _finish(
        self,
        items: Iterable[OutboxItem],
        state: str,
        error: str | None,
        delay: float,
        *,
        revive: bool = False,
    ) -> None:
        """Record what became of claimed items and drop the claim.

        Only rows still claimed by us at the revision we sent change state; a row resubmitted
        meanwhile only loses the claim, and stays pending with its new payload. ``revive``
        makes every waiting row of the destination due now, in the same transaction.
        """
        now = time.time()
        with self._write() as db:
            for item in items:
                changed = db.execute(
                    "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                    "last_error = ?, updated = ?, claimed_by = NULL, claim_expires = NULL "
                    "WHERE identity = ? AND id = ? AND claimed_by = ? AND revision = ?",
                    (
                        state,
                        now + delay,
                        error,
                        now,
                        self._identity,
                        item.id,
                        self.claimer,
                        item.revision,
                    ),
                ).rowcount
                if not changed:
                    db.execute(
                        "UPDATE outbox SET claimed_by = NULL, claim_expires = NULL "
                        "WHERE identity = ? AND id = ? AND claimed_by = ?",
                        (self._identity, item.id, self.claimer),
                    )
            if revive:
                db.execute(
                    "UPDATE outbox SET next_attempt = ?, attempts = 0 "
                    "WHERE identity = ? AND state = 'pending' AND next_attempt > ?",
                    (now, self._identity, now),
                )

    def delivered(self, items: Iterable[OutboxItem]) -> None:
        """Langfuse took ``items``: and so it is up, every waiting rating is due now."""
        self._finish(items, "delivered", None, 0.0, revive=True)

    def rejected(self, items: Iterable[OutboxItem], reason: str) -> None:
        self._finish(items, "rejected", reason, 0.0)

    def retry_later(self, items: Iterable[OutboxItem], reason: str, delay: float) -> None:
        self._finish(items, "pending", reason, delay)

    def release(self, items: Iterable[OutboxItem]) -> None:
        """Give claimed items back unsent (no attempt is counted): due for anyone now."""
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET claimed_by = NULL, claim_expires = NULL "
                "WHERE identity = ? AND id = ? AND claimed_by = ?",
                [(self._identity, i.id, self.claimer) for i in items],
            )

    def expedite(self, limit: int) -> None:
        """Make the ``limit`` oldest pending rows due now: one probe of the backend."""
        now = time.time()
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET next_attempt = ? WHERE identity = ? AND next_attempt > ? "
                "AND id IN (SELECT id FROM outbox WHERE identity = ? AND state = 'pending' "
                "ORDER BY created LIMIT ?)",
                (now, self._identity, now, self._identity, limit),
            )

    def next_due_in(self) -> float | None:
        """Seconds until a pending row can be claimed (0 if now), None if none is pending."""
        now = time.time()
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(CASE WHEN claimed_by IS NOT NULL AND claim_expires > ? "
                "THEN MAX(next_attempt, claim_expires) ELSE next_attempt END) "
                "FROM outbox WHERE identity = ? AND state = 'pending'",
                (now, self._identity),
            ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - now)

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
