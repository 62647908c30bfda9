"""SQLite schema and queries of the local trace store.

WAL mode and a busy timeout let several processes write the same file at once; every write is
one short transaction, so a reader never waits long.

What ``appsdk traces list`` filters by (user, session, trace name, errors) is read from the
span attributes in place: each filter has an index on the SQL expression that extracts it
(partial: only spans that carry it), so a filter reads the matching spans, never every
span's JSON, and files written by any appsdk version need no new columns. SQLite builds the
indexes when a file without them is first opened, and keeps them whoever writes. Without a
filter, the latest traces are found by reading spans newest first, stopping as soon as no
older span can start a later trace: the cost is that of the traces listed, not of the store.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appsdk import semconv
from appsdk.errors import StoreError
from appsdk.sqlite import open_database

__all__ = ["ScoreRecord", "SpanRecord", "TraceFilter", "TraceStore", "TraceSummary"]


def _attribute(key: str) -> str:
    """SQL for the text of span attribute ``key``: NULL when the span lacks it, and for
    attributes that are not JSON (a damaged row must not fail every write or index build).
    ``instr`` first: only spans that name the key are parsed."""
    return (
        f"(CASE WHEN instr(attributes, '\"{key}\"') AND json_valid(attributes) "
        f"THEN CAST(json_extract(attributes, '$.\"{key}\"') AS TEXT) END)"
    )


_USER = _attribute(semconv.USER_ID)
_SESSION = _attribute(semconv.SESSION_ID)
_TRACE_NAME = _attribute(semconv.LF_TRACE_NAME)
_ERROR = f"(status_code = 'ERROR' OR {_attribute(semconv.LF_LEVEL)} = 'ERROR')"
# An HTTP server span of a POST to .../feedback (the path of appsdk's feedback endpoint,
# wherever it is mounted): new (url.path) or old (http.target, query cut) conventions.
_TARGET = _attribute("http.target")
_PATH = (
    f"COALESCE({_attribute('url.path')}, substr({_TARGET}, 1, instr({_TARGET} || '?', '?') - 1),"
    f" {_attribute('http.route')})"
)
_FEEDBACK_REQUEST = (
    "(kind = 'SERVER' AND instr(attributes, '/feedback') "
    f"AND COALESCE({_attribute('http.request.method')}, {_attribute('http.method')}) = 'POST' "
    f"AND substr(rtrim({_PATH}, '/'), -9) = '/feedback')"
)
# The span a trace is shown under: one without a parent, else (a trace continued from
# another service) its first span.
_ROOT_ORDER = "ORDER BY (parent_span_id IS NOT NULL), start_ns LIMIT 1"
_IS_ROOT = """(c.parent_span_id IS NULL OR NOT EXISTS (SELECT 1 FROM spans AS r
    WHERE r.trace_id = c.trace_id AND (r.parent_span_id IS NULL OR r.start_ns < c.start_ns)))"""

_SCHEMA = f"""
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
CREATE INDEX IF NOT EXISTS spans_by_name ON spans (name, trace_id);
CREATE INDEX IF NOT EXISTS spans_by_user ON spans ({_USER}, trace_id)
    WHERE {_USER} IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_session ON spans ({_SESSION}, trace_id)
    WHERE {_SESSION} IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_trace_name ON spans ({_TRACE_NAME}, trace_id)
    WHERE {_TRACE_NAME} IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_with_errors ON spans (trace_id) WHERE {_ERROR};
CREATE INDEX IF NOT EXISTS spans_of_feedback_requests ON spans (trace_id)
    WHERE {_FEEDBACK_REQUEST};
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
    """A line of ``appsdk traces list``.

    ``name`` is the trace name (``langfuse.trace.name``) if a span sets one, else the name of
    the root span; ``user_id`` and ``session_id`` those of the first span that carries one.
    """

    trace_id: str
    name: str
    start_ns: int
    end_ns: int
    span_count: int
    user_id: str | None = None
    session_id: str | None = None
    error: bool = False


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces :meth:`TraceStore.list_traces` lists: those matching every field given.

    Example:
        >>> where = TraceFilter(user_id="ana", errors=True, hide_feedback_requests=True)
        >>> TraceStore(".appsdk/traces.db").list_traces(where=where)  # doctest: +SKIP
    """

    user_id: str | None = None
    """A span of the trace has this ``user.id``."""
    session_id: str | None = None
    """A span of the trace has this ``session.id``."""
    name: str | None = None
    """The trace name (``langfuse.trace.name``) or the root span's name is this."""
    errors: bool = False
    """A span of the trace has level ERROR or an error status."""
    hide_feedback_requests: bool = False
    """Leave out the requests to appsdk's feedback endpoint (``POST .../feedback``): traces
    with such an HTTP server span and no span of any other instrumentation (no
    observation, model call or query: nothing the application did)."""


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

    def list_traces(
        self, limit: int = 20, *, where: TraceFilter | None = None
    ) -> list[TraceSummary]:
        """The ``limit`` traces that match ``where`` and whose first span started last."""
        where = where or TraceFilter()
        if limit < 1:
            return []
        selections = _selections(where)
        if selections:
            # The first filter's index finds the traces; the others are checked once a trace.
            (found, args), *others = selections
            checks = [_trace_has("s.trace_id", condition) for condition, _ in others]
            if where.hide_feedback_requests:
                checks.append(f"NOT {_feedback_request('s.trace_id')}")
            rows = self._query(
                f"""SELECT trace_id FROM spans AS s
                    WHERE trace_id IN (SELECT trace_id FROM spans AS c WHERE {found})
                    GROUP BY trace_id {"HAVING " + " AND ".join(checks) if checks else ""}
                    ORDER BY MIN(start_ns) DESC LIMIT ?""",
                (*args, *(arg for _, more in others for arg in more), limit),
            )
            trace_ids = [str(row[0]) for row in rows]
        else:
            trace_ids = self._latest_traces(limit, where.hide_feedback_requests)
        return self._summaries(trace_ids)

    def _summaries(self, trace_ids: list[str]) -> list[TraceSummary]:
        rows = self._query(
            f"""WITH page AS (
                   SELECT trace_id, MIN(start_ns) AS first, MAX(end_ns) AS last, COUNT(*) AS n
                   FROM spans WHERE trace_id IN (SELECT value FROM json_each(?))
                   GROUP BY trace_id)
               SELECT trace_id, first, last, n,
                   (SELECT name FROM spans AS r WHERE r.trace_id = page.trace_id {_ROOT_ORDER}),
                   {_first_of(_TRACE_NAME)}, {_first_of(_USER)}, {_first_of(_SESSION)},
                   EXISTS (SELECT 1 FROM spans AS e WHERE e.trace_id = page.trace_id AND {_ERROR})
               FROM page ORDER BY first DESC""",
            (json.dumps(trace_ids),),
        )
        return [
            TraceSummary(r[0], r[5] or r[4], r[1], r[2], r[3], r[6], r[7], bool(r[8])) for r in rows
        ]

    def _latest_traces(self, limit: int, hide_feedback_requests: bool) -> list[str]:
        """The ``limit`` traces whose first span started last, read from the newest spans back.

        A trace not met yet started before the span being read, so the scan stops there once
        ``limit`` traces started later: it reads the recent spans, not the whole store.
        """
        kept: list[tuple[int, str]] = []  # a min-heap of (first start, trace id)
        seen: set[str] = set()
        with self._lock:
            try:
                spans = self._conn.execute(
                    "SELECT trace_id, start_ns FROM spans ORDER BY start_ns DESC"
                )
                for trace_id, start in spans:
                    if len(kept) == limit and start < kept[0][0]:
                        break
                    if trace_id in seen:
                        continue
                    seen.add(trace_id)
                    first, feedback = self._conn.execute(
                        f"""SELECT MIN(start_ns), {_feedback_request("?")}
                            FROM spans WHERE trace_id = ?""",
                        (trace_id, trace_id),
                    ).fetchone()
                    if not (hide_feedback_requests and feedback):
                        heapq.heappush(kept, (first, trace_id))
                    if len(kept) > limit:
                        heapq.heappop(kept)
                spans.close()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the trace store at {self.path}: {exc}") from exc
        return [trace_id for _, trace_id in sorted(kept, reverse=True)]

    def count_feedback_requests(self, where: TraceFilter | None = None) -> int:
        """How many requests to the feedback endpoint ``where`` selects (hidden or not)."""
        selections = _selections(where or TraceFilter())
        checks = "".join(f" AND {_trace_has('f.trace_id', cond)}" for cond, _ in selections)
        rows = self._query(
            f"""SELECT COUNT(DISTINCT trace_id) FROM spans AS f
                WHERE {_FEEDBACK_REQUEST} AND {_ONLY_ITS_SCOPE}{checks}""",
            tuple(arg for _, args in selections for arg in args),
        )
        return int(rows[0][0])

    def latest_trace_id(self, *, hide_feedback_requests: bool = False) -> str | None:
        latest = self._latest_traces(1, hide_feedback_requests)
        return latest[0] if latest else None

    def resolve_trace_id(self, ref: str) -> str | None:
        """``last`` (the first trace ``appsdk traces list`` lists), a full trace id, or a
        unique prefix of one."""
        if ref == "last":
            return self.latest_trace_id(hide_feedback_requests=True) or self.latest_trace_id()
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


# Traces that are only a request to the feedback endpoint: every span of the trace comes from
# the instrumentation that recorded the request (the web framework's own spans).
_ONLY_ITS_SCOPE = (
    "NOT EXISTS (SELECT 1 FROM spans AS o WHERE o.trace_id = f.trace_id AND o.scope IS NOT f.scope)"
)


def _feedback_request(trace: str) -> str:
    """SQL: the trace whose id is ``trace`` is only a request to the feedback endpoint (all its
    spans are those the request's instrumentation made: nothing the application did)."""
    return (
        f"EXISTS (SELECT 1 FROM spans AS f WHERE f.trace_id = {trace} "
        f"AND {_FEEDBACK_REQUEST} AND {_ONLY_ITS_SCOPE})"
    )


def _first_of(expression: str) -> str:
    """SQL for ``expression`` on the first span of ``page``'s trace that has it."""
    return (
        f"(SELECT {expression} FROM spans INDEXED BY spans_by_trace "
        f"WHERE trace_id = page.trace_id AND {expression} IS NOT NULL ORDER BY start_ns LIMIT 1)"
    )


def _selections(where: TraceFilter) -> list[tuple[str, list[Any]]]:
    """What ``where`` selects by: each a condition on a span ``c`` (one of its indexes finds
    the spans that meet it) that some span of a selected trace meets, and its arguments."""
    found: list[tuple[str, list[Any]]] = [
        (f"{expression} = ?", [value])
        for expression, value in ((_USER, where.user_id), (_SESSION, where.session_id))
        if value is not None
    ]
    if where.name is not None:
        found.append((f"({_TRACE_NAME} = ? OR (c.name = ? AND {_IS_ROOT}))", [where.name] * 2))
    if where.errors:
        found.append((_ERROR, []))
    return found


def _trace_has(trace: str, condition: str) -> str:
    """SQL: a span of the trace whose id is ``trace`` meets ``condition``."""
    return f"EXISTS (SELECT 1 FROM spans AS c WHERE c.trace_id = {trace} AND {condition})"
