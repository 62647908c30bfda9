"""A bounded batch span processor that counts every span it cannot deliver.

The OpenTelemetry SDK's ``BatchSpanProcessor`` (1.45) drops silently unless its internal
metrics are switched on, and its ``shutdown()`` has a fixed 30 s join. appsdk needs both a
count of what was lost (``appsdk.stats()``) and a shutdown that keeps its deadline, so this
processor keeps the same shape (bounded deque, one daemon worker, re-created after fork) with
those two additions. It never blocks or raises on the caller's thread.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from appsdk.otlp import ExportOutcome

__all__ = ["BatchExportProcessor", "ExportSink", "ExporterStats"]

_log = logging.getLogger("appsdk")


@dataclass(slots=True)
class ExporterStats:
    """Counters of one exporter; a snapshot is what ``appsdk.stats()`` returns."""

    exported: int = 0
    export_failures: int = 0
    failed_spans: int = 0
    dropped_queue_full: int = 0
    dropped_at_shutdown: int = 0
    queued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "exported": self.exported,
                "export_failures": self.export_failures,
                "failed_spans": self.failed_spans,
                "dropped_queue_full": self.dropped_queue_full,
                "dropped_at_shutdown": self.dropped_at_shutdown,
                "queued": self.queued,
            }


class ExportSink(Protocol):
    """Where the pipeline hands ended spans: a batch exporter, or a test's capture."""

    name: str

    def on_end(self, span: ReadableSpan) -> None: ...
    def force_flush(self, timeout_millis: int = 30000) -> bool: ...
    def shutdown(self, timeout_s: float = 2.0) -> None: ...
    def snapshot(self) -> dict[str, int]: ...


class BatchExportProcessor(SpanProcessor):
    """Queues ended, sampled spans and exports them in batches on a worker thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        name: str,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_s: float = 1.0,
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.stats = ExporterStats()
        self._max_queue = max_queue_size
        self._max_batch = max_export_batch_size
        self._delay = schedule_delay_s
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._shutdown = False
        self._full_warned = False
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._start_worker)
            os.register_at_fork(after_in_child=lambda: (m := ref()) and m())

    def _start_worker(self) -> None:
        # After fork the parent's queue belongs to the parent: the child starts empty.
        self._queue.clear()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._exported_upto = 0
        self._enqueued = 0
        self._worker = threading.Thread(
            target=self._run, name=f"appsdk-export-{self.name}", daemon=True
        )
        self._worker.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown or not span.context.trace_flags.sampled:
            return
        if len(self._queue) >= self._max_queue:
            self.stats.add(dropped_queue_full=1)
            if not self._full_warned:
                self._full_warned = True
                _log.warning(
                    "appsdk: the export queue of %s is full (%d spans); new spans are dropped "
                    "and counted in appsdk.stats()",
                    self.name,
                    self._max_queue,
                )
            return
        self._queue.append(span)
        self._enqueued += 1
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._shutdown:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            batch: list[ReadableSpan] = []
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
            self._export(batch)
            with self._flushed:
                self._exported_upto += len(batch)
                self._flushed.notify_all()

    def _export(self, batch: list[ReadableSpan]) -> ExportOutcome:
        send = getattr(self.exporter, "send", None)
        try:
            if send is not None:
                outcome: ExportOutcome = send(batch)
            else:
                result = self.exporter.export(batch)
                outcome = ExportOutcome(ok=result.name == "SUCCESS")
        except Exception as exc:  # an exporter bug must not kill the worker
            _log.warning("appsdk: exporter %s raised %s", self.name, type(exc).__name__)
            outcome = ExportOutcome(ok=False, reason=type(exc).__name__)
        if outcome.ok:
            self.stats.add(exported=len(batch))
        else:
            self.stats.add(export_failures=1, failed_spans=len(batch))
        return outcome

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every span queued before this call has been through an export."""
        target = self._enqueued
        deadline = time.monotonic() + timeout_millis / 1000
        self._wake.set()
        with self._flushed:
            while self._exported_upto < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._worker.is_alive():
                    return False
                self._flushed.wait(min(remaining, 0.1))
                self._wake.set()
        return True

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the worker, exporting what fits in ``timeout_s``; count what does not."""
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout_s)
        left = len(self._queue)
        if left:
            self._queue.clear()
            self.stats.add(dropped_at_shutdown=left)
        try:
            self.exporter.shutdown()
        except Exception:  # shutting down must not raise at exit
            _log.debug("appsdk: exporter %s failed to shut down", self.name, exc_info=True)

    def snapshot(self) -> dict[str, int]:
        self.stats.queued = len(self._queue)
        return self.stats.snapshot()
