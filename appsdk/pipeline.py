"""The pipeline every span passes: policy bound at start, the egress guard at the end, then
sampling retention and one batch exporter per backend.

A :class:`Pipeline` is what one ``configure()`` built (:mod:`appsdk.runtime` installs it);
spans reach it from the provider through the slot of :mod:`appsdk.provider`:
``on_start`` binds the span's policy and trace attributes, ``on_end`` runs the guard
(:func:`appsdk.egress.guard_span`, a fixed step: nothing is exported unguarded) and hands
the result to every exporter whose filter takes it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace import sampling as sampling_api

from appsdk import semconv, span_policy
from appsdk.batching import ExportSink
from appsdk.egress import guard_span
from appsdk.langfuse_interop import (
    langfuse_span_filter,
    make_langfuse_client,
    mark_app_root,
    propagated_attributes,
)
from appsdk.policy import Policy
from appsdk.provider import sampler_for
from appsdk.serialization import render_errors
from appsdk.spool import Spool
from appsdk.trace_context import apply_trace_attributes, known_at_root

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.sampling import Retention, Sampling

__all__ = ["INCOMPLETE_ATTRIBUTE", "Pipeline", "SpanFilter", "feedback_client_module"]

_log = logging.getLogger("appsdk")
INCOMPLETE_ATTRIBUTE = "appsdk.incomplete"

SpanFilter = Callable[[ReadableSpan], bool]


class Pipeline:
    """The installed tracing pipeline: settings, tracer, exporters and their counters.

    Example:
        >>> pipeline = appsdk.configure(service_name="rag-api")  # doctest: +SKIP
        >>> pipeline.stats()  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings,
        provider: TracerProvider,
        policy: Policy,
        sampling: Sampling | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.engine = policy.engine
        self.provider = provider
        self.tracer = provider.get_tracer(semconv.TRACER_NAME)
        self.retention: Retention | None = None
        if sampling is not None:
            from appsdk.sampling import Retention, RuleSampler

            rules = RuleSampler(
                sampling, service=settings.service_name, known_at_root=_known_at_root
            )
            self.sampler: sampling_api.Sampler = rules
            self.retention = Retention(sampling, self._export_kept, counts=rules.counts)
        else:
            self.sampler = sampler_for(settings)
        self.processors: list[tuple[ExportSink, SpanFilter | None]] = []
        self.on_shutdown: list[Callable[[], None]] = []
        self._environment = _environment_attributes(settings)
        self._ending = threading.local()
        self._open: weakref.WeakSet[Span] = weakref.WeakSet()
        self._langfuse_roots = langfuse_span_filter if settings.langfuse_enabled else None
        self._closed = False
        self._lock = threading.Lock()
        self._langfuse_client: Any = None
        self._langfuse_lock = threading.Lock()
        self.spool: Spool | None = None

    @property
    def langfuse_client(self) -> Any:
        """The langfuse client on appsdk's provider (prompts, scores), made on first use.

        ``import langfuse`` takes about half a second: a process that never needs it never
        pays it, and one that does pays it once.
        """
        if self._langfuse_client is None and self.settings.langfuse_enabled:
            with self._langfuse_lock:
                if self._langfuse_client is None:
                    self._langfuse_client = make_langfuse_client(self)
        return self._langfuse_client

    def add_exporter(self, processor: ExportSink, accept: SpanFilter | None) -> None:
        self.processors.append((processor, accept))

    def on_start(self, span: Span, parent_context: Context | None) -> None:
        """Bind the span's policy (its parent's, else the configured one); trace attributes."""
        self._open.add(span)
        try:
            engine = span_policy.resolve(parent_context, None, self.engine)
            span_policy.bind(span, engine)
            if self._environment:
                span.set_attributes(self._environment)
            propagated = propagated_attributes(parent_context)
            if propagated:  # written by the user through langfuse: guarded at the exit
                span.set_attributes(propagated)
            apply_trace_attributes(span, engine)
            if self._langfuse_roots is not None:
                mark_app_root(span, parent_context, self._langfuse_roots)
        except Exception:  # the tracing path never raises into user code
            _log.debug("appsdk: span start failed", exc_info=True)

    def on_ending(self, span: Span) -> None:
        """Hand the live span to the ``on_end`` that follows on this thread.

        The SDK calls ``on_end`` with a read-only copy of the span; the policy and the trusted
        values bound to the live span object are read from it through this hand-off.
        """
        self._ending.span = span
        self._open.discard(span)

    def _end_open_spans(self) -> None:
        """End what is still open at shutdown (a stream abandoned mid-way, a hung call), marked
        incomplete, so what it recorded is exported rather than lost with the process."""
        for span in list(self._open):
            try:
                if span.is_recording():
                    span.set_attributes(
                        {
                            semconv.LF_LEVEL: "WARNING",
                            semconv.LF_STATUS_MESSAGE: "incomplete: still open at shutdown",
                            INCOMPLETE_ATTRIBUTE: True,
                        }
                    )
                    span.end()
            except Exception:  # shutting down must not raise
                _log.debug("appsdk: could not end an open span", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        """The egress guard, then every exporter whose filter takes the span."""
        ending = self._ending
        live = getattr(ending, "span", None)
        if live is not None:
            ending.span = None
            if live.context is not span.context:
                live = None
        try:
            safe = guard_span(span, self.engine, live)
        except Exception:  # a span we cannot make safe is not exported at all
            _log.debug("appsdk: the egress guard failed; span dropped", exc_info=True)
            return
        if self.retention is not None and not safe.context.trace_flags.sampled:
            self.retention.on_end(safe)  # dropped at the head: held in case it matters
            return
        for processor, accept in self.processors:
            if accept is None or accept(safe):
                processor.on_end(safe)

    def _export_kept(self, span: ReadableSpan) -> None:
        for processor, accept in self.processors:
            if accept is None or accept(span):
                processor.on_end(span)

    def feedback(self, trace_id: str, name: str, value: Any) -> None:
        """A score arrived: a negative one keeps a trace the head decision dropped."""
        if self.retention is not None:
            self.retention.feedback(trace_id, name, value)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per exporter (exported, failures, dropped and why), and of sampling."""
        counts = {processor.name: processor.snapshot() for processor, _ in self.processors}
        # Values the recorder could not render (recorded as placeholders): the process's count.
        counts["recorder"] = {"render_errors": render_errors()}
        # Members of incoming tracestates dropped by the guard (over bounds, or a secret).
        sampler = getattr(self.provider, "delegating_sampler", None)
        if sampler is not None:
            dropped = sampler.trace_state_dropped
            counts["incoming"] = {f"tracestate_{why}": n for why, n in dropped.items()}
        if self.retention is not None:
            counts["sampling"] = self.retention.stats()
        return counts

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export everything queued so far; False if the deadline passed first."""
        deadline = time.monotonic() + timeout_s
        done = True
        for processor, _ in self.processors:
            remaining = max(0.0, deadline - time.monotonic())
            done = processor.force_flush(int(remaining * 1000)) and done
        return done

    def drain_spool(self, timeout_s: float = 30.0) -> bool:
        """Send everything waiting in the spool for this configuration; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        done = True
        for processor, _ in self.processors:
            drain = getattr(processor, "drain_spool", None)
            if drain is not None:
                done = drain(max(0.0, deadline - time.monotonic())) and done
        return done

    def shutdown(self, timeout_s: float | None = None, *, end_open: bool = False) -> None:
        """Export what fits within ``timeout_s`` (default: the settings'), then stop.

        Args:
            end_open: end the spans still open first, marked incomplete (the process is
                ending; a re-configuration leaves running calls alone).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        budget = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        if end_open:
            self._end_open_spans()
        for processor, _ in self.processors:
            processor.shutdown(timeout_s=max(0.0, deadline - time.monotonic()))
        feedback = feedback_client_module()
        if feedback is not None:  # ratings get what the spans left of the same deadline
            feedback.shutdown_default(max(0.0, deadline - time.monotonic()))
        for callback in self.on_shutdown:
            try:
                callback()
            except Exception:  # shutting down must not raise at exit
                _log.debug("appsdk: a shutdown callback failed", exc_info=True)
        if self.spool is not None:
            try:
                self.spool.close()  # a re-configured process keeps no file open twice
            except Exception:
                _log.debug("appsdk: closing the spool failed", exc_info=True)


def _environment_attributes(settings: Settings) -> dict[str, str]:
    return {
        key: value
        for key, value in (
            (semconv.LF_ENVIRONMENT, settings.environment),
            (semconv.LF_RELEASE, settings.release),
        )
        if value
    }


def _known_at_root(parent_context: Context | None) -> dict[str, Any]:
    known = known_at_root()
    propagated = propagated_attributes(parent_context)  # langfuse.propagate_attributes
    for key, name in (
        (semconv.USER_ID, "user_id"),
        (semconv.SESSION_ID, "session_id"),
        (semconv.LF_TRACE_NAME, "trace_name"),
        (semconv.LF_TRACE_TAGS, "tags"),
    ):
        if key in propagated:
            known.setdefault(name, propagated[key])
    return known


def feedback_client_module() -> Any:
    """The feedback client module if this process used feedback (never imported for this).

    One still being imported (by the thread resuming a pending outbox) has nothing of this
    process's to deliver yet, and is not complete: it counts as not there.
    """
    module = sys.modules.get("appsdk.feedback.client")
    return module if hasattr(module, "shutdown_default") else None
