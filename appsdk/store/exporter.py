"""A SpanExporter that writes finished spans into the local trace store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from appsdk.errors import StoreError
from appsdk.store.db import SpanRecord, TraceStore

__all__ = ["LocalStoreExporter", "to_record"]

_log = logging.getLogger("appsdk")


def to_record(span: ReadableSpan) -> SpanRecord:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = span.parent
    scope = span.instrumentation_scope
    service = span.resource.attributes.get("service.name")
    return SpanRecord(
        span_id=format_span_id(ctx.span_id),
        trace_id=format_trace_id(ctx.trace_id),
        parent_span_id=format_span_id(parent.span_id) if parent is not None else None,
        name=span.name,
        kind=span.kind.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status_code=span.status.status_code.name,
        status_message=span.status.description,
        scope=scope.name if scope is not None else None,
        service_name=str(service) if service is not None else None,
        attributes={
            k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()
        },
    )


class LocalStoreExporter(SpanExporter):
    """Writes spans to a SQLite :class:`TraceStore` (opened lazily, on the export thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._store: TraceStore | None = None

    @property
    def store(self) -> TraceStore:
        if self._store is None:
            self._store = TraceStore(self.path)
        return self._store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.store.write_spans(to_record(span) for span in spans)
        except (StoreError, OSError, Exception) as exc:  # never raise into the batch worker
            _log.warning("appsdk: could not write %d spans to %s: %s", len(spans), self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
