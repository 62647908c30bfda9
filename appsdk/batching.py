"""A bounded batch span processor that loses nothing it can keep, and counts what it cannot.

The OpenTelemetry SDK's ``BatchSpanProcessor`` (1.45) drops silently unless its internal
metrics are switched on, has a fixed 30 s join in ``shutdown()``, and drops a batch after its
retries. This one keeps the same shape (bounded deque, one daemon worker, re-created after
fork) and adds: counters for ``appsdk.stats()``, a shutdown that keeps its deadline, and a
spool. A healthy backend gets every batch live, under any load: the worker waits for the
request in flight, and a producer that outruns export is dropped at the bounded queue, counted.
While a backend fails with a retryable error (or is slower than the hand-over wait) its
batches go to the on-disk spool without further network attempts; a probe with backoff sends
the oldest spooled batch, and once one is acknowledged the spool drains, oldest first, between
live batches. The caller's thread only ever appends to the deque.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExportResult

from appsdk.backoff import Backoff
from appsdk.spool import Destination, Spool, exporter_key

__all__ = [
    "BatchExportProcessor",
    "ExportOutcome",
    "ExportSink",
    "ExporterStats",
    "PlainExporter",
    "SpoolableExporter",
    "start_untraced",
]


def start_untraced(thread: threading.Thread) -> None:
    """Start one of appsdk's own threads outside any trace.

    The threading instrumentation gives a thread the context its ``start()`` ran in; a worker
    started lazily inside a traced call would otherwise put every later export or delivery
    (an instrumented HTTP request) in that call's trace, whoever's it was.
    """
    token = context_api.attach(Context())
    try:
        thread.start()
    finally:
        context_api.detach(token)


_log = logging.getLogger("appsdk")
# How long a spool found empty for this exporter is taken as empty, unless this process
# spools a batch or is asked to drain (another process's batches wait at most this long).
_SPOOL_RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """What one export attempt came to."""

    ok: bool
    retryable: bool = False
    status: int | None = None
    reason: str = ""
    retry_after_s: float | None = None
    """The backend's ``Retry-After``: no request to it before this many seconds."""
    too_large: bool = False
    """413: the batch is split and its halves are sent again (a single span is rejected)."""


@dataclass(slots=True)
class ExporterStats:
    """Counters of one exporter; a snapshot is what ``appsdk.stats()`` returns."""

    exported: int = 0
    export_failures: int = 0
    failed_spans: int = 0
    dropped_queue_full: int = 0
    dropped_at_shutdown: int = 0
    spooled: int = 0
    resent: int = 0
    spool_evicted: int = 0
    rejected: int = 0
    spool_faults: int = 0
    spool_delete_failures: int = 0
    queued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name[0] != "_"}


class ExportSink(Protocol):
    """Where the pipeline hands ended spans: a batch exporter, or a test's capture."""

    name: str

    def on_end(self, span: ReadableSpan) -> None: ...
    def force_flush(self, timeout_millis: int = 30000) -> bool: ...
    def shutdown(self, timeout_s: float = 2.0) -> None: ...
    def snapshot(self) -> dict[str, int]: ...


class PlainExporter(Protocol):
    """What every exporter gives the processor: OpenTelemetry's ``SpanExporter`` calls."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult: ...
    def shutdown(self) -> None: ...


@runtime_checkable
class SpoolableExporter(PlainExporter, Protocol):
    """An exporter whose batches can wait in the spool: a batch is encoded once, and its bytes
    are sent now or, from the spool, later (split in two when the backend answers 413).

    :class:`appsdk.otlp.OTLPHttpExporter` declares it; a processor given a spool spools only
    for an exporter that is one (the local store's writes need no spool).
    """

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes: ...
    def send_encoded(self, body: bytes, count: int) -> ExportOutcome: ...
    def split(self, body: bytes) -> list[tuple[bytes, int]]: ...


@dataclass(frozen=True, slots=True)
class _Job:
    body: bytes
    spans: int
    spool_id: int | None


class _Sender:
    """Sends one request at a time on its own thread, so a hung backend never holds batching."""

    def __init__(self, send: Any, done: Any, idle: Any, name: str) -> None:
        self._send = send
        self._done = done
        self._idle = idle
        self._job: _Job | None = None
        self._started = 0.0
        self._stopping = False
        self._ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"appsdk-send-{name}", daemon=True)
        start_untraced(self._thread)

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def current(self) -> _Job | None:
        return self._job

    def submit(self, job: _Job, wait_s: float = 0.0) -> bool:
        """Hand ``job`` over, if the request in flight ends within ``wait_s`` of its start.

        A request already older than ``wait_s`` is a slow or hung backend: no wait at all, so
        a tight loop's batches go to the spool at once instead of queueing behind it. A wait
        also ends early once :meth:`stop_waiting` is called (shutdown: spool, don't wait).
        """
        with self._cond:
            if self._job is not None:
                left = self._started + wait_s - time.monotonic()
                if (
                    left <= 0
                    or self._stopping
                    or not self._cond.wait_for(lambda: self._job is None or self._stopping, left)
                    or self._job is not None
                ):
                    return False
            self._job = job
            self._started = time.monotonic()
            self._cond.notify_all()
            return True

    def stop_waiting(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def end(self) -> None:
        """Let the thread end once the request in flight (if any) is done."""
        with self._cond:
            self._stopping = self._ended = True
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None, max(0.0, timeout_s))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._ended)
                job = self._job
                if job is None:  # ended with nothing in flight: the thread goes
                    return
            try:
                outcome: ExportOutcome = self._send(job.body, job.spans)
            except Exception as exc:  # an exporter bug must not kill the sender
                outcome = ExportOutcome(ok=False, retryable=True, reason=type(exc).__name__)
            try:
                self._done(job, outcome)
            except Exception:
                _log.warning("appsdk: recording an export result failed", exc_info=True)
            with self._cond:
                self._job = None
                self._cond.notify_all()
            self._idle()  # free again: the worker may hand over the next spooled batch


class BatchExportProcessor(SpanProcessor):
    """Queues ended, sampled spans and exports them in batches on a worker thread.

    Args:
        spool: where batches wait while the backend is down (used with a
            :class:`SpoolableExporter`, as :class:`appsdk.otlp.OTLPHttpExporter` is).
        spool_key: the destination this exporter's batches are spooled for (its name, URL and
            credentials): only batches spooled for the same destination are sent.
    """

    def __init__(
        self,
        exporter: PlainExporter,
        *,
        name: str,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_s: float = 1.0,
        spool: Spool | None = None,
        spool_key: Destination | None = None,
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.stats = ExporterStats()
        self._max_queue = max_queue_size
        self._max_batch = max_export_batch_size
        self._delay = schedule_delay_s
        # How long a batch waits for the request in flight before it goes to the spool: a
        # known outage puts batches on disk within about this long.
        self._handover_s = max(0.05, min(schedule_delay_s, 1.0))
        self._encoder = exporter if isinstance(exporter, SpoolableExporter) else None
        self._spool = spool if self._encoder is not None else None
        self.spool_key = spool_key or exporter_key(name, name)
        self._backoff = Backoff()
        # Each spooled batch is claimed for as long as one send may take, and then some.
        self._claimer = f"{os.getpid()}-{id(self):x}-{time.monotonic_ns():x}"
        self._lease_s = 60.0
        self._undeletable: set[int] = set()
        # When the spool last had nothing of ours to claim (None: look at the next chance).
        self._spool_found_empty: float | None = None
        self._spool_fault_warned = False
        self._lost_reported = 0  # _lost() at the last force_flush (guarded by _flushed)
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._shutdown = False
        self._full_warned = False
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._start_worker)
            warmed = weakref.WeakMethod(self._wait_warmed)
            os.register_at_fork(
                # Warming imports modules: a fork in the middle would leave the child an
                # import lock no thread of its own holds. Let it finish first (bounded).
                before=lambda: (m := warmed()) and m(),
                after_in_child=lambda: (m := ref()) and m(),
            )

    def _wait_warmed(self) -> None:
        self._warmed.wait(5.0)

    def _start_worker(self) -> None:
        # After fork the parent's queue belongs to the parent: the child starts empty.
        self._queue.clear()
        self._warmed = threading.Event()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._exported_upto = 0
        self._enqueued = 0
        # next() on itertools.count is atomic under the GIL, "+= 1" from many threads is not.
        self._enqueue_count = itertools.count(1)
        self._worker = threading.Thread(
            target=self._run, name=f"appsdk-export-{self.name}", daemon=True
        )
        start_untraced(self._worker)
        if self._spool is not None:
            send = self._encoding().send_encoded
            self._sender = _Sender(send, self._sent, self._wake.set, self.name)

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
        self._enqueued = next(self._enqueue_count)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    # -- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        warm = getattr(self.exporter, "warm", None)
        try:
            if warm is not None:
                warm()
        except Exception:  # the first send will say what is wrong
            _log.debug("appsdk: warming exporter %s failed", self.name, exc_info=True)
        finally:
            self._warmed.set()
        while not self._shutdown:
            delay = self._delay
            if self._spool is not None and self._backoff.down:
                delay = min(delay, max(0.05, self._backoff.until - time.monotonic()))
            self._wake.wait(delay)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        self._drain_spool()
        while self._queue:
            batch: list[ReadableSpan] = []
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
            self._export(batch)
            with self._flushed:
                self._exported_upto += len(batch)
                self._flushed.notify_all()
            # Under sustained load the queue never empties: a recovered backend's spool drains
            # between live batches, one for one, rather than only once traffic stops.
            self._drain_spool(wait_s=self._handover_s)

    def _drain_spool(self, wait_s: float = 0.0) -> None:
        """Hand the oldest spooled batch to the sender when it is free and the backend is up."""
        spool = self._spool
        if spool is None or (self._sender.busy and wait_s <= 0):
            return
        if self._backoff.down and (self._shutdown or not self._backoff.may_probe()):
            return
        found_empty = self._spool_found_empty
        if found_empty is not None and time.monotonic() - found_empty < _SPOOL_RECHECK_S:
            return  # nothing of ours went there since: no query between every two batches
        # Our claims are ours to take again: not the batch in flight, or it is sent twice (only
        # this thread hands the sender a job, so what is in flight cannot change meanwhile).
        in_flight = self._sender.current
        skip = self._undeletable
        if in_flight is not None and in_flight.spool_id is not None:
            skip = skip | {in_flight.spool_id}
        try:
            batch = spool.claim_oldest(self.spool_key, self._claimer, self._lease_s, skip=skip)
        except Exception as exc:  # a broken spool must not stop live export
            self._spool_fault("read", exc)
            return
        # Another process with this configuration may spool too: looked at again in a while.
        self._spool_found_empty = time.monotonic() if batch is None else None
        if batch is not None and not self._sender.submit(
            _Job(batch.body, batch.spans, batch.id), wait_s
        ):
            self._spool_call(spool.release, batch.id)

    def _sent(self, job: _Job, outcome: ExportOutcome) -> None:
        """The sender's report on one request (runs on the sender thread)."""
        if outcome.ok:
            self._delivered(job)
        elif outcome.too_large and job.spans > 1:
            self._split(job)
        elif outcome.retryable:
            self.stats.add(export_failures=1)
            self._backoff.failed(outcome.retry_after_s)
            if job.spool_id is None:
                self._spool_put(job.body, job.spans)
            else:
                self._spool_call(self._spool_or_fail().release, job.spool_id)
        else:
            self.stats.add(export_failures=1, rejected=job.spans)
            spool = self._spool_or_fail()
            if job.spool_id is not None:
                self._spool_call(spool.reject, job.spool_id, outcome.reason)
            else:
                self._spool_call(
                    spool.put, self.spool_key, job.body, job.spans, rejected=outcome.reason
                )
        with self._flushed:
            self._flushed.notify_all()

    def _delivered(self, job: _Job) -> None:
        if job.spool_id is None:
            self.stats.add(exported=job.spans)
        else:
            self.stats.add(exported=job.spans, resent=job.spans)
            if not self._spool_call(self._spool_or_fail().remove, job.spool_id):
                # Delivered but still on disk: this process never sends it again (another
                # process may, once this one's claim has run out; Langfuse upserts by span id).
                self._undeletable.add(job.spool_id)
                self.stats.add(spool_delete_failures=1)
        self._backoff.recovered()
        self._wake.set()  # more may wait in the spool

    def _split(self, job: _Job) -> None:
        """413: spool both halves in place of the batch; one span alone is rejected."""
        spool = self._spool_or_fail()
        try:
            halves = self._encoding().split(job.body)
        except Exception as exc:
            _log.warning("appsdk: could not split a batch of %s: %s", self.name, exc)
            halves = []
        if len(halves) < 2:
            reason = "HTTP 413: the batch is too large and cannot be split"
            self.stats.add(export_failures=1, rejected=job.spans)
            if job.spool_id is not None:
                self._spool_call(spool.reject, job.spool_id, reason)
            else:
                self._spool_call(spool.put, self.spool_key, job.body, job.spans, rejected=reason)
            return
        for body, spans in halves:
            self._spool_put(body, spans)
        if job.spool_id is not None:
            self._spool_call(spool.remove, job.spool_id)
            self.stats.add(spooled=-job.spans)  # its halves are counted in its place
        self._wake.set()

    def _spool_or_fail(self) -> Spool:
        assert self._spool is not None
        return self._spool

    def _encoding(self) -> SpoolableExporter:
        """The exporter as a spoolable one (there is a spool only when it is one)."""
        assert self._encoder is not None
        return self._encoder

    def _spool_call(self, method: Any, *args: Any, **kwargs: Any) -> bool:
        """Call a spool method; a spool fault (full disk, read-only) is counted, never raised."""
        try:
            method(*args, **kwargs)
        except Exception as exc:
            self._spool_fault(method.__name__, exc)
            return False
        return True

    def _spool_fault(self, what: str, exc: Exception) -> None:
        self.stats.add(spool_faults=1)
        if not self._spool_fault_warned:
            self._spool_fault_warned = True
            _log.warning(
                "appsdk: the spool of %s failed (%s: %s); live export goes on, and what could "
                "not be kept is counted in appsdk.stats()",
                self.name,
                what,
                type(exc).__name__,
            )

    def _export(self, batch: list[ReadableSpan]) -> None:
        if self._spool is not None:
            self._export_spooling(batch)
            return
        try:
            ok = self.exporter.export(batch).name == "SUCCESS"
        except Exception as exc:  # an exporter bug must not kill the worker
            _log.warning("appsdk: exporter %s raised %s", self.name, type(exc).__name__)
            ok = False
        if ok:
            self.stats.add(exported=len(batch))
        else:
            self.stats.add(export_failures=1, failed_spans=len(batch))

    def _export_spooling(self, batch: list[ReadableSpan]) -> None:
        spool = self._spool
        assert spool is not None
        try:
            body = self._encoding().encode(batch)
        except Exception as exc:
            _log.warning(
                "appsdk: could not encode %d spans for %s: %s",
                len(batch),
                self.name,
                type(exc).__name__,
            )
            self.stats.add(export_failures=1, failed_spans=len(batch))
            return
        # A healthy backend takes every batch live: the worker waits for the request in flight
        # (the queue absorbs the producers meanwhile, and drops, counted, when it is full).
        # Only a backend that is down, or slower than the hand-over allows, fills the spool.
        if self._backoff.down or not self._sender.submit(
            _Job(body, len(batch), None), self._handover_s
        ):
            self._spool_put(body, len(batch))

    def _spool_put(self, body: bytes, spans: int) -> None:
        assert self._spool is not None
        self._spool_found_empty = None
        if not self._spool_call(self._spool.put, self.spool_key, body, spans):
            self.stats.add(failed_spans=spans)  # a full disk: counted, and export goes on
            return
        self.stats.add(spooled=spans)

    # -- flush and shutdown -------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until every span queued before this call has been exported or spooled.

        Returns:
            True when every span queued so far reached the backend: False at the deadline,
            while batches of this destination wait in the spool, or when spans were rejected,
            evicted from the spool or could not be kept since the last flush (each such loss
            is reported by one flush; ``snapshot()`` keeps counting it).
        """
        waited = self._wait_flushed(timeout_millis)
        # Counted after the wait: a failure of the batches just sent is this flush's to report.
        lost = self._lost()
        with self._flushed:
            clean, self._lost_reported = lost == self._lost_reported, lost
        return waited and clean and not (self._spool is not None and self._spool_waiting())

    def _lost(self) -> int:
        """Spans this processor took and will never deliver (dropped at a full queue: not
        taken; at shutdown: after the last flush)."""
        counts = self.stats.snapshot()
        return counts["failed_spans"] + counts["rejected"] + counts["spool_evicted"]

    def _wait_flushed(self, timeout_millis: int) -> bool:
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
        if self._spool is None:
            return True
        # A slow backend leaves batches in the spool while it is up: flushing sends them too.
        while self._spool_waiting() and not self._backoff.down:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.set()
            with self._flushed:
                self._flushed.wait(min(remaining, 0.1))
        return self._sender.wait_idle(deadline - time.monotonic())

    def _spool_waiting(self) -> bool:
        """Whether batches this process may still send wait in the spool."""
        assert self._spool is not None
        try:
            return self._spool.pending(self.spool_key) > len(self._undeletable)
        except Exception as exc:
            self._spool_fault("read", exc)
            return False

    def drain_spool(self, timeout_s: float) -> bool:
        """Send what waits in the spool now; True once none is left for this exporter."""
        spool = self._spool
        if spool is None:
            return True
        deadline = time.monotonic() + timeout_s
        # An explicit drain may probe at once, but the backoff holds after that, and a
        # server's Retry-After holds throughout: a flush never hammers a struggling backend.
        self._backoff.probe_now()
        self._spool_found_empty = None
        while self._spool_waiting():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._worker.is_alive():
                return False
            self._wake.set()
            with self._flushed:
                self._flushed.wait(min(remaining, max(0.05, self._backoff.wait_s()), 0.5))
        return True

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the worker within ``timeout_s``: what it could not send goes to the spool."""
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_s
        self._shutdown = True
        self._wake.set()
        # A healthy backend gets the rest live; leave a slice of the budget to spool what a
        # slow or hung backend has not taken by then.
        self._worker.join(max(0.0, timeout_s * 0.6 if self._spool else timeout_s))
        if self._spool is not None and self._worker.is_alive():
            self._sender.stop_waiting()  # batches in hand go to the spool, not to a hung send
            self._worker.join(max(0.0, min(timeout_s * 0.2, deadline - time.monotonic())))
        left: list[ReadableSpan] = []
        while self._queue:
            left.append(self._queue.popleft())
        if self._spool is not None:
            # The request in flight gets what is left of the deadline, less a slice to spool
            # a copy of it should it still hang.
            reserve = min(0.2, timeout_s * 0.1)
            if self._sender.busy and not self._sender.wait_idle(
                deadline - reserve - time.monotonic()
            ):
                job = self._sender.current
                if job is not None and job.spool_id is None:
                    # Still in flight: keep a copy; a resend upserts by span id in Langfuse.
                    self._spool_put(job.body, job.spans)
            if left and time.monotonic() < deadline:
                self._spool_left(left)
                left = []
        if left:
            self.stats.add(dropped_at_shutdown=len(left))
        if self._spool is not None:
            self._sender.end()
        try:
            self.exporter.shutdown()
        except Exception:  # shutting down must not raise at exit
            _log.debug("appsdk: exporter %s failed to shut down", self.name, exc_info=True)

    def _spool_left(self, spans: list[ReadableSpan]) -> None:
        for start in range(0, len(spans), self._max_batch):
            chunk = spans[start : start + self._max_batch]
            try:
                body = self._encoding().encode(chunk)
            except Exception:
                self.stats.add(dropped_at_shutdown=len(chunk))
                continue
            self._spool_put(body, len(chunk))

    def snapshot(self) -> dict[str, int]:
        """The counters; ``spooled`` and ``resent`` are this process's, ``spool_pending`` is
        what waits on disk now (from any process with this configuration)."""
        self.stats.queued = len(self._queue)
        values = self.stats.snapshot()
        if self._spool is not None:
            try:
                values["spool_pending"] = self._spool.pending_spans(self.spool_key)
            except Exception:  # a closed or broken spool must not break stats()
                values["spool_pending"] = -1
        return values

    def evicted(self, spans: int) -> None:
        self.stats.add(spool_evicted=spans)
