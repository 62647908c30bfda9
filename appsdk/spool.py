"""The on-disk spool: batches a backend could not take now, kept until it can.

Each row is one export request body (OTLP protobuf, already through the egress policy), keyed
by the destination it was meant for: the exporter's name and the destination's identity, a
slow salted hash of its URL and credentials (Langfuse keys, OTLP headers such as
``authorization`` or a tenant's ``x-scope-orgid``). Two Langfuse projects share one URL, and
tenants of one collector differ only by a header; keyed by identity, a batch spooled for
project A is never sent by a process configured for project B. What another configuration
left behind stays (``appsdk spool status`` names it) until its own configuration drains it or
it ages out. Rows from before identities (an older appsdk) have none and are never sent.

Batches are drained oldest first. A batch the backend rejected for good (400, 401, 403, 413)
is kept with the reason and not retried. Size and age bounds evict the oldest rows; every
eviction is counted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from appsdk.errors import StoreError, safe_url
from appsdk.sqlite import add_columns, open_database

__all__ = [
    "Destination",
    "IdentityHasher",
    "Spool",
    "SpoolStatus",
    "SpooledBatch",
    "exporter_key",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exporter TEXT NOT NULL,
    created REAL NOT NULL,
    spans INTEGER NOT NULL,
    size INTEGER NOT NULL,
    rejected TEXT,
    body BLOB NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    destination TEXT
);
CREATE INDEX IF NOT EXISTS spool_by_age ON spool (created);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
# Created after the migration: an old file has no identity column until then.
_INDEX = "CREATE INDEX IF NOT EXISTS spool_by_identity ON spool (exporter, identity, rejected, id)"

# PBKDF2 rounds for an identity: about 25 ms once per destination and file, so a guess at a
# tenant id or key from a copied spool file costs as much each time.
_ROUNDS = 100_000
_PROJECT_SHOWN = 10  # "pk-lf-1234…": enough to tell projects apart, not the whole key


@dataclass(frozen=True)
class Destination:
    """Where spans or scores go, and as whom: what keys the spool and the feedback outbox.

    ``label`` is for people (the URL without credentials, the Langfuse project's public key
    prefix, the names of OTLP headers); ``secret`` is a SHA-256 of the URL and every
    credential. It stays in memory: files store only :class:`IdentityHasher`'s salted, slow
    hash of it, and ``repr`` never shows it.

    Example:
        >>> exporter_key("otlp", "http://tempo:4318/v1/traces", {"x-scope-orgid": "acme"}).label
        'otlp http://tempo:4318/v1/traces (headers x-scope-orgid)'
    """

    name: str
    url: str
    label: str
    secret: bytes = field(repr=False)


def exporter_key(
    name: str,
    endpoint: str,
    credentials: Mapping[str, str] | None = None,
    *,
    project: str | None = None,
) -> Destination:
    """The destination ``name`` sends to: ``endpoint`` with these credentials.

    Args:
        name: the exporter (``langfuse``, ``otlp``, ``otlp-1``).
        endpoint: the URL, credentials in it included (they count, but are never shown).
        credentials: every header or key that tells the backend who is sending.
        project: a public name of the account (Langfuse's public key), shown shortened.
    """
    given = dict(credentials or {})
    canonical = json.dumps([endpoint, sorted(given.items())], separators=(",", ":"))
    if project is not None:
        shown = project if len(project) <= _PROJECT_SHOWN else project[:_PROJECT_SHOWN] + "…"
        detail = f" (project {shown})"
    else:
        detail = f" (headers {', '.join(sorted(given))})" if given else ""
    url = safe_url(endpoint)
    return Destination(
        name=name,
        url=url,
        label=f"{name} {url}{detail}",
        secret=hashlib.sha256(canonical.encode()).digest(),
    )


class IdentityHasher:
    """The identities of destinations in one file: PBKDF2 of their secret with the file's salt.

    The salt is made once per file (the first process to open it wins), so every process
    sharing the file computes the same identity for the same destination.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        connection.execute("INSERT OR IGNORE INTO meta VALUES ('salt', randomblob(16))")
        row = connection.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
        self._salt = bytes(row[0])
        self._known: dict[Destination, str] = {}
        self._lock = threading.Lock()

    def identity(self, destination: Destination) -> str:
        with self._lock:
            known = self._known.get(destination)
        if known is not None:
            return known
        digest = hashlib.pbkdf2_hmac("sha256", destination.secret, self._salt, _ROUNDS)
        identity = digest.hex()[:32]
        with self._lock:
            self._known[destination] = identity
        return identity

    def known(self, name: str, identity: str) -> Destination | None:
        """The destination this process hashed to ``identity`` under ``name``, if any."""
        with self._lock:
            return next(
                (d for d, i in self._known.items() if i == identity and d.name == name), None
            )


@dataclass(frozen=True)
class SpooledBatch:
    id: int
    spans: int
    body: bytes


@dataclass(frozen=True)
class SpoolStatus:
    """What waits in the spool for one destination.

    ``destination`` names it without credentials; ``current`` says whether it is one of the
    destinations given to :meth:`Spool.status` (the running configuration's), which are the
    only ones that configuration sends.
    """

    exporter: str
    identity: str
    destination: str
    current: bool
    batches: int
    spans: int
    bytes: int
    oldest_age_s: float | None
    rejected: list[tuple[int, str]]


class Spool:
    """A SQLite file of pending export bodies, shared by every exporter of a process.

    Every read and write names the :class:`Destination` it is for; a batch is only ever
    handed back to the destination it was put for.

    Args:
        path: the file (``APPSDK_SPOOL_PATH``, default ``.appsdk/spool.db``).
        max_bytes: total size bound; the oldest batches are evicted beyond it.
        max_age_s: batches older than this are evicted.
        on_evict: called with (destination, spans) for every eviction, to count it; the
            destination is None for a batch of a destination this process never used.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 24 * 3600,
        on_evict: Callable[[Destination | None, int], None] | None = None,
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
        try:
            add_columns(
                self._conn,
                "spool",
                [
                    "identity TEXT NOT NULL DEFAULT ''",
                    "destination TEXT",
                    "claimed_by TEXT",
                    "claimed_until REAL",
                ],
            )
            self._conn.execute("DROP INDEX IF EXISTS spool_by_exporter")
            self._conn.execute(_INDEX)
            self._hasher = IdentityHasher(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot upgrade the export spool at {self.path}: {exc}") from exc

    def identity(self, destination: Destination) -> str:
        """The identity ``destination``'s batches carry in this file."""
        return self._hasher.identity(destination)

    def _key(self, destination: Destination) -> tuple[str, str]:
        return destination.name, self._hasher.identity(destination)

    def put(
        self, destination: Destination, body: bytes, spans: int, rejected: str | None = None
    ) -> None:
        exporter, identity = self._key(destination)
        with self._lock:
            self._conn.execute(
                "INSERT INTO spool (exporter, identity, destination, created, spans, size, "
                "rejected, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    exporter,
                    identity,
                    destination.label,
                    self._clock(),
                    spans,
                    len(body),
                    rejected,
                    body,
                ),
            )
        self._enforce_bounds()

    def _enforce_bounds(self) -> None:
        with self._lock:
            cutoff = self._clock() - self.max_age_s
            old = self._conn.execute(
                "SELECT id, exporter, identity, spans FROM spool WHERE created < ?", (cutoff,)
            ).fetchall()
            total = self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()[0]
            evicted = list(old)
            if total > self.max_bytes:
                excess = total - self.max_bytes
                old_ids = {e[0] for e in evicted}
                for row_id, exporter, identity, spans, size in self._conn.execute(
                    "SELECT id, exporter, identity, spans, size FROM spool ORDER BY id"
                ):
                    if excess <= 0:
                        break
                    if row_id not in old_ids:
                        evicted.append((row_id, exporter, identity, spans))
                    excess -= size
            if evicted:
                self._conn.executemany("DELETE FROM spool WHERE id = ?", [(e[0],) for e in evicted])
        if self._on_evict is not None:
            for _, exporter, identity, spans in evicted:
                self._on_evict(self._hasher.known(exporter, identity), spans)

    def oldest(self, destination: Destination, limit: int = 1) -> list[SpooledBatch]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, spans, body FROM spool WHERE exporter = ? AND identity = ? "
                "AND rejected IS NULL ORDER BY id LIMIT ?",
                (*self._key(destination), limit),
            ).fetchall()
        return [SpooledBatch(r[0], r[1], r[2]) for r in rows]

    def claim_oldest(
        self, destination: Destination, claimer: str, lease_s: float, skip: Iterable[int] = ()
    ) -> SpooledBatch | None:
        """Claim the oldest batch for ``destination`` no other process holds, for ``lease_s``.

        Processes sharing one spool send each batch once: a claimed row is invisible to the
        others until its claimer removes it, releases it, or dies and the lease runs out.
        ``skip`` names rows this process must not send again (delivered, not deletable).
        """
        exporter, identity = self._key(destination)
        now = self._clock()
        skipped = tuple(skip)
        not_skipped = f"AND id NOT IN ({','.join('?' * len(skipped))}) " if skipped else ""
        with self._lock:
            row = self._conn.execute(
                "UPDATE spool SET claimed_by = ?, claimed_until = ? WHERE id = ("
                "SELECT id FROM spool WHERE exporter = ? AND identity = ? AND rejected IS NULL "
                "AND (claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?) "
                f"{not_skipped}ORDER BY id LIMIT 1) RETURNING id, spans, body",
                (claimer, now + lease_s, exporter, identity, now, claimer, *skipped),
            ).fetchone()
        return SpooledBatch(row[0], row[1], row[2]) if row is not None else None

    def release(self, batch_id: int) -> None:
        """Give a claimed batch back (its send failed and may be retried by anyone)."""
        with self._lock:
            self._conn.execute(
                "UPDATE spool SET claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                (batch_id,),
            )

    def remove(self, batch_id: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE id = ?", (batch_id,))

    def reject(self, batch_id: int, reason: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE spool SET rejected = ? WHERE id = ?", (reason, batch_id))

    def retry_rejected(self, destination: Destination) -> int:
        """Make ``destination``'s rejected batches pending again (after fixing the keys)."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE spool SET rejected = NULL, claimed_by = NULL, claimed_until = NULL "
                "WHERE exporter = ? AND identity = ? AND rejected IS NOT NULL",
                self._key(destination),
            )
        return int(cursor.rowcount)

    def purge(self, keep: Iterable[Destination] = (), *, rejected_only: bool = False) -> int:
        """Delete batches of every destination but ``keep``; only rejected ones if asked.

        Returns:
            How many batches were deleted.
        """
        kept = [self._key(d) for d in keep]
        where = ["NOT (exporter = ? AND identity = ?)" for _ in kept]
        if rejected_only:
            where.append("rejected IS NOT NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            cursor = self._conn.execute(
                f"DELETE FROM spool{clause}", [part for key in kept for part in key]
            )
        return int(cursor.rowcount)

    def pending(self, destination: Destination) -> int:
        """Batches waiting for ``destination`` (not those rejected for good)."""
        return self._pending(destination, "COUNT(*)")

    def pending_spans(self, destination: Destination) -> int:
        return self._pending(destination, "COALESCE(SUM(spans), 0)")

    def _pending(self, destination: Destination, what: str) -> int:
        key = self._key(destination)
        with self._lock:
            return int(
                self._conn.execute(
                    f"SELECT {what} FROM spool WHERE exporter = ? AND identity = ? "
                    "AND rejected IS NULL",
                    key,
                ).fetchone()[0]
            )

    def status(self, current: Iterable[Destination] = ()) -> list[SpoolStatus]:
        """Per destination: pending batches, spans, bytes, oldest age, and rejections.

        Args:
            current: the running configuration's destinations; their rows say ``current``.
        """
        mine = {self._key(d) for d in current}
        now = self._clock()
        with self._lock:
            rows = self._conn.execute(
                "SELECT exporter, identity, MAX(destination), SUM(rejected IS NULL), "
                "SUM(CASE WHEN rejected IS NULL THEN spans ELSE 0 END), "
                "SUM(CASE WHEN rejected IS NULL THEN size ELSE 0 END), "
                "MIN(CASE WHEN rejected IS NULL THEN created END) "
                "FROM spool GROUP BY exporter, identity"
            ).fetchall()
            rejected = self._conn.execute(
                "SELECT exporter, identity, id, rejected FROM spool "
                "WHERE rejected IS NOT NULL ORDER BY id"
            ).fetchall()
        result = [
            SpoolStatus(
                exporter=exporter,
                identity=identity,
                destination=label
                or f"{exporter} (spooled by an older appsdk, which kept no destination identity)",
                current=(exporter, identity) in mine,
                batches=int(batches),
                spans=int(spans),
                bytes=int(size),
                oldest_age_s=(now - oldest) if oldest is not None else None,
                rejected=[(r[2], r[3]) for r in rejected if (r[0], r[1]) == (exporter, identity)],
            )
            for exporter, identity, label, batches, spans, size, oldest in rows
        ]
        return sorted(result, key=lambda s: (not s.current, s.destination, s.identity))

    def total_bytes(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
