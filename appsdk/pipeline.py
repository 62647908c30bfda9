"""The tracing pipeline: one TracerProvider, a sampler, and a batch exporter per backend.

``configure()`` installs one pipeline as the process's tracing pipeline: appsdk's provider
becomes the global OpenTelemetry TracerProvider (or, if the application installed its own SDK
provider first, appsdk attaches its processors to that one). Spans flow
provider -> ``_PipelineSlot`` -> egress guard -> one ``BatchExportProcessor`` per backend.
Re-configuring swaps what the slot points at; the provider itself lives as long as the process.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as sampling_api
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from appsdk import lifecycle, semconv, span_policy
from appsdk.batching import BatchExportProcessor, ExportSink
from appsdk.egress import guard_span
from appsdk.errors import StoreError
from appsdk.langfuse_interop import mark_app_root, propagated_attributes
from appsdk.policy import Policy
from appsdk.spool import Spool, exporter_key
from appsdk.trace_context import apply_trace_attributes, known_at_root

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.sampling import Retention, Sampling

__all__ = ["Pipeline", "configure", "current", "flush", "shutdown", "stats"]

_log = logging.getLogger("appsdk")
INCOMPLETE_ATTRIBUTE = "appsdk.incomplete"

SpanFilter = Callable[[ReadableSpan], bool]


def _make_sampler(settings: Settings) -> sampling_api.Sampler:
    name = settings.traces_sampler
    if name is not None:
        ratio = float(settings.traces_sampler_arg) if settings.traces_sampler_arg else 1.0
        samplers: dict[str, Callable[[], sampling_api.Sampler]] = {
            "always_on": lambda: sampling_api.ALWAYS_ON,
            "always_off": lambda: sampling_api.ALWAYS_OFF,
            "parentbased_always_on": lambda: sampling_api.DEFAULT_ON,
            "parentbased_always_off": lambda: sampling_api.DEFAULT_OFF,
            "traceidratio": lambda: sampling_api.TraceIdRatioBased(ratio),
            "parentbased_traceidratio": lambda: sampling_api.ParentBasedTraceIdRatio(ratio),
        }
        return samplers[name]()
    if settings.sample_rate is not None and settings.sample_rate < 1.0:
        return sampling_api.ParentBasedTraceIdRatio(settings.sample_rate)
    return sampling_api.DEFAULT_ON


class _DelegatingSampler(sampling_api.Sampler):
    """Samples with the current pipeline's sampler, so re-configuring can change it."""

    def __init__(self) -> None:
        self.target: sampling_api.Sampler = sampling_api.DEFAULT_ON

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> sampling_api.SamplingResult:
        return self.target.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"appsdk({self.target.get_description()})"


def _is_langfuse_processor(processor: SpanProcessor) -> bool:
    return type(processor).__name__ == "LangfuseSpanProcessor"


class _PipelineSlot(SpanProcessor):
    """The one processor appsdk adds to a provider; forwards to the current pipeline."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_start(span, parent_context)

    def _on_ending(self, span: Span) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_ending(span)

    def on_end(self, span: ReadableSpan) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.on_end(span)

    def shutdown(self) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Third parties (langfuse's atexit hook among them) flush with 30 s; keep our deadline.
        pipeline = self.pipeline
        if pipeline is None:
            return True
        return pipeline.flush(min(timeout_millis / 1000, pipeline.settings.shutdown_timeout_s))


class AppTracerProvider(TracerProvider):
    """appsdk's TracerProvider.

    It refuses a ``LangfuseSpanProcessor`` for a project appsdk already exports to: that
    processor would export the same spans a second time and costs every span of the provider
    about 77 us (see DESIGN.md). The langfuse client still creates its spans here.
    """

    def __init__(self, resource: Resource, slot: _PipelineSlot, sampler: _DelegatingSampler):
        super().__init__(resource=resource, sampler=sampler, shutdown_on_exit=False)
        self.slot = slot
        self.delegating_sampler = sampler
        super().add_span_processor(slot)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        pipeline = self.slot.pipeline
        if (
            pipeline is not None
            and _is_langfuse_processor(span_processor)
            and getattr(span_processor, "public_key", None) == pipeline.settings.langfuse_public_key
        ):
            _log.debug("appsdk: langfuse's span processor is not needed; appsdk exports its spans")
            return
        super().add_span_processor(span_processor)


def langfuse_span_filter(span: ReadableSpan) -> bool:
    """Which spans go to Langfuse: appsdk's and langfuse's own, GenAI spans, HTTP client spans."""
    scope = span.instrumentation_scope
    name = scope.name if scope is not None else ""
    if name in (semconv.TRACER_NAME, "langfuse-sdk") or name.startswith(
        ("opentelemetry.instrumentation.httpx", "appsdk")
    ):
        return True
    return any(key.startswith(("gen_ai.", "langfuse.")) for key in (span.attributes or {}))


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
            self.sampler = _make_sampler(settings)
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
                    self._langfuse_client = _make_langfuse_client(self)
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
        feedback = _feedback_client_module()
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


_state_lock = threading.Lock()
_slot = _PipelineSlot()
_sampler = _DelegatingSampler()
_provider: TracerProvider | None = None
_retired: Pipeline | None = None


def current() -> Pipeline | None:
    """The installed pipeline, or None before ``configure()``."""
    return _slot.pipeline


def _install_provider(settings: Settings) -> TracerProvider:
    global _provider
    if _provider is not None:
        running = _provider.resource.attributes.get("service.name")
        if settings.service_name and settings.service_name != running:
            # OpenTelemetry sets a process's provider, and so its resource, once.
            _log.warning(
                "appsdk: service_name %r does not apply: this process already traces as %r "
                "(the OpenTelemetry resource is set once per process; restart to change it). "
                "Every other setting of this configure() call applies.",
                settings.service_name,
                running,
            )
        return _provider
    existing = trace_api.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # The application owns the provider: ride along on it.
        existing.add_span_processor(_slot)
        _provider = existing
        return existing
    resource_attrs: dict[str, Any] = {}
    if settings.service_name:
        resource_attrs["service.name"] = settings.service_name
    provider = AppTracerProvider(Resource.create(resource_attrs), _slot, _sampler)
    trace_api.set_tracer_provider(provider)
    _provider = provider
    return provider


def _open_spool(settings: Settings, pipeline: Pipeline) -> Spool | None:
    if not settings.spool or not (settings.langfuse_enabled or settings.extra_otlp_endpoints()):
        return None

    def count_eviction(key: object, spans: int) -> None:
        for processor, _ in pipeline.processors:
            if getattr(processor, "spool_key", None) == key:
                processor.evicted(spans)  # type: ignore[attr-defined]

    try:
        return Spool(
            settings.spool_path,
            max_bytes=settings.spool_max_bytes,
            max_age_s=settings.spool_max_age_s,
            on_evict=count_eviction,
        )
    except StoreError as exc:
        _log.warning("appsdk: no spool (%s); spans a backend cannot take are dropped", exc)
        return None


def _build(
    settings: Settings, provider: TracerProvider, policy: Policy, sampling: Sampling | None
) -> Pipeline:
    # Imported here: httpx and the store are not needed until a pipeline is built.
    from appsdk.otlp import OTLPHttpExporter, langfuse_exporter
    from appsdk.store.exporter import LocalStoreExporter

    pipeline = Pipeline(settings, provider, policy, sampling)
    spool = _open_spool(settings, pipeline)
    pipeline.spool = spool
    batching: dict[str, Any] = {
        "max_queue_size": settings.max_queue_size,
        "max_export_batch_size": settings.max_export_batch_size,
        "schedule_delay_s": settings.schedule_delay_ms / 1000,
    }
    if settings.langfuse_enabled:
        assert settings.langfuse_public_key and settings.langfuse_secret_key
        exporter = langfuse_exporter(
            base_url=settings.langfuse_url,
            public_key=settings.langfuse_public_key,
            secret_key=settings.langfuse_secret_key.get_secret_value(),
            timeout_s=settings.export_timeout_s,
        )
        pipeline.add_exporter(
            BatchExportProcessor(
                exporter,
                name="langfuse",
                spool=spool,
                spool_key=settings.langfuse_destination(),
                **batching,
            ),
            _langfuse_filter_for(provider, settings),
        )
    for index, (url, headers) in enumerate(settings.extra_otlp_endpoints()):
        name = "otlp" if index == 0 else f"otlp-{index}"
        exporter = OTLPHttpExporter(
            name=name, endpoint=url, headers=headers, timeout_s=settings.export_timeout_s
        )
        processor = BatchExportProcessor(
            exporter,
            name=name,
            spool=spool,
            spool_key=exporter_key(name, url, headers),
            **batching,
        )
        pipeline.add_exporter(processor, None)
    if settings.local_store_enabled:
        pipeline.add_exporter(
            BatchExportProcessor(LocalStoreExporter(settings.store_path), name="local", **batching),
            None,
        )
    return pipeline


def _langfuse_filter_for(provider: TracerProvider, settings: Settings) -> SpanFilter:
    """Langfuse's filter, minus what a langfuse processor already on the provider exports."""
    active = getattr(provider, "_active_span_processor", None)
    for processor in getattr(active, "_span_processors", ()):
        if _is_langfuse_processor(processor) and (
            getattr(processor, "public_key", None) == settings.langfuse_public_key
        ):
            theirs: SpanFilter = getattr(processor, "_should_export_span", langfuse_span_filter)
            _log.warning(
                "appsdk: a langfuse client created before appsdk.configure() exports some spans "
                "itself; appsdk leaves those to it. Call appsdk.configure() first to avoid its "
                "per-span cost."
            )
            return lambda span: langfuse_span_filter(span) and not theirs(span)
    return langfuse_span_filter


def _make_langfuse_client(pipeline: Pipeline) -> Any:
    """The langfuse client (prompts, scores, its @observe) on appsdk's provider, or None."""
    settings = pipeline.settings
    try:
        from langfuse import Langfuse

        assert settings.langfuse_secret_key is not None
        return Langfuse(
            public_key=settings.langfuse_public_key,
            secret_key=settings.langfuse_secret_key.get_secret_value(),
            base_url=settings.langfuse_url,
            environment=settings.environment,
            release=settings.release,
            tracer_provider=pipeline.provider,
        )
    except Exception as exc:  # prompts and scores degrade; tracing goes on
        _log.warning("appsdk: could not create the langfuse client: %s", type(exc).__name__)
        return None


def _attach_langfuse_client(pipeline: Pipeline) -> None:
    """Make the langfuse client now if the application uses langfuse, else on first use.

    An application that imported langfuse calls ``langfuse.get_client()``, which must find
    appsdk's client (with the configured keys); one that did not is spared the import.
    """
    if pipeline.settings.langfuse_enabled and "langfuse" in sys.modules:
        _ = pipeline.langfuse_client


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


def configure(
    *, policy: Policy | None = None, sampling: Sampling | None = None, **options: Any
) -> Pipeline:
    """Install appsdk's tracing pipeline and return it.

    Args:
        policy: what content is recorded; default :meth:`Policy.from_env` (redacted).
        options: any field of :class:`appsdk.Settings`, e.g. ``langfuse_base_url=``,
            ``otlp_endpoints=``, ``store_path=``; arguments win over environment variables.

    Raises:
        ConfigError: an option or environment variable is invalid.
    """
    from appsdk.config import load_settings

    settings = load_settings(**options)
    policy = policy if policy is not None else Policy.from_env()
    if sampling is None and settings.sampling:
        from appsdk.sampling import Sampling  # pydantic models: built only when used

        sampling = Sampling.parse(settings.sampling)

    if not settings.tracing_enabled:
        # As langfuse's LANGFUSE_TRACING_ENABLED=false: decorated code runs untraced.
        _log.info("appsdk: tracing is disabled (LANGFUSE_TRACING_ENABLED=false)")
        shutdown()
        return Pipeline(settings, trace_api.get_tracer_provider(), policy)  # type: ignore[arg-type]
    with _state_lock:
        provider = _install_provider(settings)
        pipeline = _build(settings, provider, policy, sampling)
        previous, _slot.pipeline = _slot.pipeline, pipeline
        _sampler.target = pipeline.sampler
        lifecycle.install(stop=_shutdown_at_exit, flush=_flush_at_signal)
    if previous is not None:
        previous.shutdown()
    _attach_langfuse_client(pipeline)
    if settings.langfuse_enabled:
        # Off the caller's thread: checking the outbox loads the feedback client (httpx).
        threading.Thread(target=_resume_feedback, name="appsdk-resume", daemon=True).start()
    from appsdk.metrics_export import install_when_used

    install_when_used(settings)
    return pipeline


def _resume_feedback() -> None:
    """Ratings a previous process left in the outbox are delivered without a new submission."""
    try:
        from appsdk.feedback.client import start_default_if_pending

        start_default_if_pending()
    except Exception:  # tracing works on whatever the outbox's state
        _log.debug("appsdk: could not resume pending feedback", exc_info=True)


def _flush_at_signal() -> None:
    pipeline = _slot.pipeline
    if pipeline is not None:
        pipeline.flush(pipeline.settings.shutdown_timeout_s)


def _shutdown_at_exit() -> None:
    pipeline = _slot.pipeline
    if pipeline is not None:
        pipeline.shutdown(end_open=True)


def flush(timeout_s: float = 5.0) -> bool:
    """Export every span ended so far and deliver pending feedback; False at the deadline."""
    deadline = time.monotonic() + timeout_s
    pipeline = _slot.pipeline
    done = pipeline.flush(timeout_s) if pipeline is not None else True
    feedback = _feedback_client_module()
    if feedback is not None:
        done = feedback.flush_default(max(0.0, deadline - time.monotonic())) and done
    return done


def _feedback_client_module() -> Any:
    """The feedback client module if this process used feedback (never imported for this).

    One still being imported (by the thread resuming a pending outbox) has nothing of this
    process's to deliver yet, and is not complete: it counts as not there.
    """
    module = sys.modules.get("appsdk.feedback.client")
    return module if hasattr(module, "shutdown_default") else None


def shutdown(timeout_s: float | None = None) -> None:
    """Flush and stop the pipeline within ``timeout_s``; tracing becomes a no-op."""
    global _retired
    with _state_lock:
        pipeline, _slot.pipeline = _slot.pipeline, None
        _retired = pipeline or _retired
    if pipeline is not None:
        pipeline.shutdown(timeout_s, end_open=True)


def stats() -> dict[str, dict[str, int]]:
    """Per exporter: spans exported, export failures, and spans dropped (queue full, shutdown).

    After ``shutdown()`` this still reports the pipeline that was shut down.
    """
    pipeline = _slot.pipeline or _retired
    return pipeline.stats() if pipeline is not None else {}
