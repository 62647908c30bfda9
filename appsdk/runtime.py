"""The process's tracing runtime: ``configure()``, ``current()``, ``flush()``, ``shutdown()``.

``configure()`` builds a :class:`~appsdk.pipeline.Pipeline` from the settings (one batch
exporter per backend, the spool, the local store) and installs it: appsdk's provider becomes
the global OpenTelemetry TracerProvider (or, if the application installed its own SDK provider
first, appsdk's slot rides on that one). Before that, :mod:`appsdk.preflight` checks what
the settings name (files, folders, keys; ``appsdk doctor`` runs it too); after it, threading is
instrumented so hand-offs to threads keep the trace. Re-configuring swaps what the slot
points at; the provider itself lives as long as the process. Process exit, SIGTERM and
forked workers are wired through :mod:`appsdk.lifecycle`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from appsdk import lifecycle
from appsdk.batching import BatchExportProcessor, start_untraced
from appsdk.errors import StoreError
from appsdk.langfuse_interop import attach_langfuse_client, langfuse_filter_for
from appsdk.pipeline import Pipeline, feedback_client_module
from appsdk.policy import Policy
from appsdk.preflight import preflight
from appsdk.provider import AppTracerProvider, DelegatingSampler, PipelineSlot
from appsdk.spool import Spool

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.sampling import Sampling
    from appsdk.spool import Destination

__all__ = ["configure", "current", "flush", "shutdown", "stats"]

_log = logging.getLogger("appsdk")

_state_lock = threading.Lock()
_slot = PipelineSlot()
_sampler = DelegatingSampler()
_provider: TracerProvider | None = None
_retired: Pipeline | None = None
_threads_instrumented = False  # by appsdk, in this process


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


def _open_spool(
    settings: Settings, processors: dict[Destination, BatchExportProcessor]
) -> Spool | None:
    """The spool, when an exporter is spooled; its evictions are counted by the processor of
    their destination (``processors``, filled as the exporters are made)."""
    if not any(spec.spooled for spec in settings.exporters):
        return None

    def count_eviction(destination: Destination | None, spans: int) -> None:
        processor = processors.get(destination) if destination is not None else None
        if processor is not None:
            processor.evicted(spans)

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
    from appsdk.otlp import exporter_for
    from appsdk.store.exporter import LocalStoreExporter

    pipeline = Pipeline(settings, provider, policy, sampling)
    spooled: dict[Destination, BatchExportProcessor] = {}
    spool = _open_spool(settings, spooled)
    pipeline.spool = spool
    for spec in settings.exporters:
        exporter = (
            LocalStoreExporter(settings.store_path)
            if spec.kind == "local"
            else exporter_for(spec, settings.export_timeout_s)
        )
        processor = BatchExportProcessor(
            exporter,
            name=spec.name,
            spool=spool if spec.spooled else None,
            spool_key=spec.destination,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay_s=settings.schedule_delay_ms / 1000,
        )
        if spec.spooled and spec.destination is not None:
            spooled[spec.destination] = processor
        accept = langfuse_filter_for(provider, settings) if spec.spans == "langfuse" else None
        pipeline.add_exporter(processor, accept)
    return pipeline


def _instrument_threads(wanted: bool) -> None:
    """Executor and thread hand-offs keep the trace: OpenTelemetry's threading instrumentation
    (``threading.Thread``, ``threading.Timer``, ``ThreadPoolExecutor.submit``, and so
    ``loop.run_in_executor``), installed once per process; removed only if appsdk put it."""
    global _threads_instrumented
    if wanted == _threads_instrumented:
        return
    # Imported here, not with appsdk (wrapt and the instrumentation base: tens of ms).
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    instrumentor = ThreadingInstrumentor()  # one per process (BaseInstrumentor's singleton)
    if not wanted:
        instrumentor.uninstrument()
        _threads_instrumented = False
    elif not instrumentor.is_instrumented_by_opentelemetry:  # the app may have done it
        instrumentor.instrument(skip_dep_check=True)  # it instruments the standard library
        _threads_instrumented = True


def configure(
    *, policy: Policy | None = None, sampling: Sampling | None = None, **options: Any
) -> Pipeline:
    """Install appsdk's tracing pipeline and return it.

    Args:
        policy: what content is recorded; default :meth:`Policy.from_settings` of these
            settings (``capture=`` / ``APPSDK_CAPTURE``; redacted).
        options: any field of :class:`appsdk.Settings`, e.g. ``langfuse_base_url=``,
            ``otlp_endpoints=``, ``store_path=``; arguments win over environment variables.

    Threads started and executor tasks submitted from then on continue the submitter's
    trace (``instrument_threads``; docs/index.md, "Threads and executors").

    Raises:
        ConfigError: an option or environment variable is invalid, or a file, folder or key
            it names cannot be used (:func:`preflight`).
    """
    from appsdk.config import load_settings

    settings = load_settings(**options)
    checked = preflight(settings, load_sampling=sampling is None)
    if checked.problems:  # the first; `appsdk doctor` lists them all
        raise next(iter(checked.problems.values()))
    sampling = sampling if sampling is not None else checked.sampling
    policy = policy if policy is not None else Policy.from_settings(settings)

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
        _instrument_threads(settings.instrument_threads)
    if previous is not None:
        previous.shutdown()
    attach_langfuse_client(pipeline)
    if settings.langfuse_enabled:
        # Off the caller's thread: checking the outbox loads the feedback client (httpx).
        start_untraced(threading.Thread(target=_resume_feedback, name="appsdk-resume", daemon=True))
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
    """Export every span ended so far and deliver pending feedback, within ``timeout_s``.

    Returns:
        True only when every span it waited for reached every destination (sent, or written
        to the local store) and no rating is pending. False at the deadline, while batches
        wait in the spool (a backend down), when spans were rejected or could not be kept
        since the last flush, or while ratings wait in the outbox. Spans dropped by sampling
        or at a full queue are not waited for (``stats()`` counts the latter).
    """
    deadline = time.monotonic() + timeout_s
    pipeline = _slot.pipeline
    done = pipeline.flush(timeout_s) if pipeline is not None else True
    feedback = feedback_client_module()
    if feedback is not None:
        done = feedback.flush_default(max(0.0, deadline - time.monotonic())) and done
    return done


def shutdown(timeout_s: float | None = None) -> None:
    """Flush and stop the pipeline within ``timeout_s``; tracing becomes a no-op."""
    global _retired
    with _state_lock:
        pipeline, _slot.pipeline = _slot.pipeline, None
        _retired = pipeline or _retired
    if pipeline is not None:
        pipeline.shutdown(timeout_s, end_open=True)


def stats() -> dict[str, dict[str, int]]:
    """Per exporter: spans exported, export failures, and spans dropped (queue full, shutdown);
    ``recorder``: values that could not be rendered (recorded as placeholders); ``incoming``:
    members of incoming tracestates dropped (over their bounds, or holding a secret);
    ``sampling``; ``feedback``, once a rating was submitted or resumed: ratings submitted,
    delivered, pending and rejected for the configured destination (Langfuse, else the local
    store). docs/reliability.md says what each counter means.

    After ``shutdown()`` this still reports the pipeline that was shut down.
    """
    pipeline = _slot.pipeline or _retired
    if pipeline is None:
        return {}
    counts = pipeline.stats()
    feedback = feedback_client_module()
    ratings = feedback.stats_default(pipeline) if feedback is not None else None
    if ratings is not None:
        counts["feedback"] = ratings
    return counts
