"""The OpenTelemetry side of appsdk: the TracerProvider it installs, the one span processor
(the slot) through which every span reaches the current pipeline, and the sampler that a new
``configure()`` can swap (a process's provider is set once; what it feeds is not).

That sampler is also where a ``tracestate`` from outside is guarded: every span of appsdk's
provider gets its trace state from it, whichever sampler decides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as sampling_api
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from appsdk.langfuse_interop import is_langfuse_processor
from appsdk.redaction import Redactor
from appsdk.trace_context import GuardedState, GuardedTraceState, guard_trace_state

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.pipeline import Pipeline

__all__ = ["AppTracerProvider", "DelegatingSampler", "PipelineSlot", "sampler_for"]

_log = logging.getLogger("appsdk")


def sampler_for(settings: Settings) -> sampling_api.Sampler:
    """The sampler the settings name (OTEL_TRACES_SAMPLER, LANGFUSE_SAMPLE_RATE), else all.

    A named OTel sampler behaves as OpenTelemetry defines it (``parentbased_*`` follow a
    remote parent's sampled flag). Otherwise the span that continues an incoming traceparent
    is decided as a root, as ``Sampling(parent="rules")`` does (docs/sampling.md): a caller's
    flag neither exports what the ratio drops nor keeps its requests out of every sink.
    """
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
    root: sampling_api.Sampler = sampling_api.ALWAYS_ON
    if settings.sample_rate is not None and settings.sample_rate < 1.0:
        root = sampling_api.TraceIdRatioBased(settings.sample_rate)
    return sampling_api.ParentBased(
        root, remote_parent_sampled=root, remote_parent_not_sampled=root
    )


class DelegatingSampler(sampling_api.Sampler):
    """Samples with the current pipeline's sampler, so re-configuring can change it.

    The trace state a span would inherit passes :func:`appsdk.trace_context.guard_trace_state`
    under the current pipeline's redactor, once: the guarded state is passed on to the local
    children as it is. ``trace_state_dropped`` counts the members dropped, by reason.
    """

    def __init__(self) -> None:
        self.target: sampling_api.Sampler = sampling_api.DEFAULT_ON
        # Where the current pipeline, and so the guard's redactor, is found (set by the provider).
        self.slot: PipelineSlot | None = None
        self.trace_state_dropped = {"over_bounds": 0, "secret": 0}
        self._lock = threading.Lock()

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
        result = self.target.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        state = result.trace_state
        if state and not isinstance(state, GuardedTraceState):
            result.trace_state = self._guard(state)
        return result

    def _guard(self, state: TraceState) -> GuardedTraceState:
        pipeline = self.slot.pipeline if self.slot is not None else None
        redactor = pipeline.engine.redactor if pipeline is not None else Redactor()
        try:
            guarded = guard_trace_state(state, redactor.redact_repeated)
        except Exception:  # an application's redactor raised: what it could not clear goes
            _log.debug("appsdk: the trace state guard failed; state dropped", exc_info=True)
            guarded = GuardedState(GuardedTraceState(), 0, len(state))
        if guarded.over_bounds or guarded.secrets:
            with self._lock:
                dropped = self.trace_state_dropped
                first = not any(dropped.values())
                dropped["over_bounds"] += guarded.over_bounds
                dropped["secret"] += guarded.secrets
            if first:
                _log.warning(
                    "appsdk: members of an incoming tracestate were dropped (over its bounds, "
                    "or holding a secret); they are neither recorded nor forwarded"
                )
        return guarded.state

    def get_description(self) -> str:
        return f"appsdk({self.target.get_description()})"


class PipelineSlot(SpanProcessor):
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
    processor would export the same spans a second time, and its start-time filter would cost
    every span of the provider about 77 us (docs/architecture.md, "The pipeline"). The
    langfuse client still creates its spans here.
    """

    def __init__(self, resource: Resource, slot: PipelineSlot, sampler: DelegatingSampler):
        super().__init__(resource=resource, sampler=sampler, shutdown_on_exit=False)
        self.slot = slot
        self.delegating_sampler = sampler
        sampler.slot = slot  # the trace state guard redacts with the slot's pipeline's policy
        super().add_span_processor(slot)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        pipeline = self.slot.pipeline
        if (
            pipeline is not None
            and is_langfuse_processor(span_processor)
            and getattr(span_processor, "public_key", None) == pipeline.settings.langfuse_public_key
        ):
            _log.debug("appsdk: langfuse's span processor is not needed; appsdk exports its spans")
            return
        super().add_span_processor(span_processor)
