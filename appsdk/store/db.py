"""SQLite schema and queries of the local trace store.

WAL mode and a busy timeout let several processes write the same file at once; every write is
one short transaction, so a reader never waits long.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appsdk.errors import StoreError
from appsdk.sqlite import open_database

__all__ = ["ScoreRecord", "SpanRecord", "TraceStore", "TraceSummary"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    span_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT,
    scope TEXT,
    service_name TEXT,
    attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, start_ns);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
CREATE TABLE IF NOT EXISTS scores (
    id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    observation_id TEXT,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    data_type TEXT NOT NULL,
    comment TEXT,
    created_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_by_trace ON scores (trace_id);
"""


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One stored span, as the CLI and tests read it back."""

    span_id: str
    trace_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str | None
    scope: str | None
    service_name: str | None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """One stored score (end-user feedback or an evaluation)."""

    id: str
    trace_id: str
    observation_id: str | None
    name: str
    value: Any
    data_type: str
    comment: str | None
    created_ns: int


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """A line of ``appsdk traces list``."""

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    span_count: int


class TraceStore:
    """A SQLite file holding spans and scores.

    Example:
        >>> store = TraceStore(".appsdk/traces.db")
        >>> store.latest_trace_id()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(
                f"no trace store at {self.path}: run a traced program first "
                "(e.g. `make demo`), or point APPSDK_STORE_PATH at the right file"
            )
        self._lock = threading.Lock()
        self._conn = open_database(self.path, _SCHEMA, what="trace store")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def write_spans(self, spans: Iterable[SpanRecord]) -> int:
        rows = [
            (
                s.span_id,
                s.trace_id,
                s.parent_span_id,
                s.name,
                s.kind,
                s.start_ns,
                s.end_ns,
                s.status_code,
                s.status_message,
                s.scope,
                s.service_name,
                json.dumps(s.attributes, default=str),
            )
            for s in spans
        ]
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def write_score(self, score: ScoreRecord) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?)",
                (
                    score.id,
                    score.trace_id,
                    score.observation_id,
                    score.name,
                    json.dumps(score.value),
                    score.data_type,
                    score.comment,
                    score.created_ns,
                ),
            )

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the trace store at {self.path}: {exc}") from exc

    def list_traces(self, limit: int = 20) -> list[TraceSummary]:
        rows = self._query(
            """SELECT trace_id, MIN(start_ns) AS first, MAX(end_ns), COUNT(*),
                      (SELECT name FROM spans AS root WHERE root.trace_id = s.trace_id
                       ORDER BY (root.parent_span_id IS NOT NULL), root.start_ns LIMIT 1)
               FROM spans AS s GROUP BY trace_id ORDER BY first DESC LIMIT ?""",
            (limit,),
        )
        return [TraceSummary(r[0], r[4], r[1], r[2], r[3]) for r in rows]

    def latest_trace_id(self) -> str | None:
        rows = self._query(
            """SELECT trace_id FROM spans GROUP BY trace_id ORDER BY MIN(start_ns) DESC LIMIT 1"""
        )
        return str(rows[0][0]) if rows else None

    def resolve_trace_id(self, ref: str) -> str | None:
        """``last``, a full trace id, or a unique prefix of one."""
        if ref == "last":
            return self.latest_trace_id()
        rows = self._query(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id LIKE ? LIMIT 2", (ref + "%",)
        )
        return str(rows[0][0]) if len(rows) == 1 else None

    def spans(self, trace_id: str) -> list[SpanRecord]:
        rows = self._query("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id,))
        with self._decoding("span"):
            records = [SpanRecord(*r[:11], attributes=json.loads(r[11])) for r in rows]  # type: ignore[misc]
            if not all(isinstance(record.attributes, dict) for record in records):
                raise ValueError("attributes are not a JSON object")
        return records

    def scores(self, trace_id: str) -> list[ScoreRecord]:
        rows = self._query(
            "SELECT * FROM scores WHERE trace_id = ? ORDER BY created_ns", (trace_id,)
        )
        with self._decoding("score"):
            return [ScoreRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:]) for r in rows]

    @contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        """Rows another program wrote (or a damaged file) become a StoreError naming the file.

        A table of other columns fails the unpacking, a text that is not JSON the decoding.
        """
        try:
            yield
        except (TypeError, ValueError, IndexError) as exc:
            raise StoreError(
                f"cannot read a {what} in the trace store at {self.path}: it is damaged or "
                f"not appsdk's ({type(exc).__name__}: {exc})"
            ) from exc

    def count_spans(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM spans")[0][0])
