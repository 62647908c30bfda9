"""Spans the simulator emits as the real gateway and vLLM would, under the caller's trace.

The endpoint picker starts ``gateway.request`` from the incoming ``traceparent``; vLLM starts
``llm_request`` (kind SERVER) with its own attribute names. Both sample parent-based, so an
unsampled caller gets no downstream spans, as in production. ``baggage`` is ignored, as vLLM
ignores it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request

from appsdk import runtime as _runtime

__all__ = ["PipelineExporter", "SimTracing"]

_PROPAGATOR = TraceContextTextMapPropagator()


class PipelineExporter(SpanExporter):
    """Hands the simulated gateway and vLLM spans to appsdk's pipeline, so they go wherever
    the application's own spans go (the local store, Langfuse, an OTLP collector)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        pipeline = _runtime.current()
        if pipeline is None:
            return SpanExportResult.FAILURE
        for span in spans:
            pipeline.on_end(span)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@dataclass
class _Handle:
    gateway: trace_api.Span
    vllm: trace_api.Span
    started: float


class SimTracing:
    """Two services' tracers (gateway, vLLM) exporting to ``exporter``; inert without one."""

    def __init__(self, exporter: SpanExporter | str | None) -> None:
        self._providers: list[TracerProvider] = []
        if isinstance(exporter, str):
            if exporter != "appsdk":
                raise ValueError(f"exporter={exporter!r}: give a SpanExporter, 'appsdk' or None")
            exporter = PipelineExporter()
        if exporter is None:
            self._gateway: trace_api.Tracer = trace_api.NoOpTracer()
            self._vllm: trace_api.Tracer = trace_api.NoOpTracer()
            return
        self._gateway = self._tracer("llm-d-inference-gateway", "llm-d.epp", exporter)
        self._vllm = self._tracer("vllm", "vllm.tracing", exporter)

    def _tracer(self, service: str, scope: str, exporter: SpanExporter) -> trace_api.Tracer:
        provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=ParentBased(ALWAYS_ON),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._providers.append(provider)
        return provider.get_tracer(scope)

    def start(self, request: Request, request_id: str, model: str, body: dict[str, Any]) -> _Handle:
        parent = _PROPAGATOR.extract(dict(request.headers))
        gateway = self._gateway.start_span(
            "gateway.request",
            context=parent,
            kind=trace_api.SpanKind.SERVER,
            attributes={
                "gen_ai.request.model": model,
                "llm_d.request_id": request_id,
                "llm_d.objective": request.headers.get("x-llm-d-inference-objective", ""),
                "llm_d.fairness_id": request.headers.get("x-llm-d-inference-fairness-id", ""),
                "llm_d.target_endpoint": "vllm-sim-0",
            },
        )
        vllm = self._vllm.start_span(
            "llm_request",
            context=trace_api.set_span_in_context(gateway),
            kind=trace_api.SpanKind.SERVER,
            attributes={
                "gen_ai.request.id": request_id,
                "gen_ai.response.model": model,
                "gen_ai.request.max_tokens": int(body.get("max_tokens") or 0),
                "gen_ai.request.temperature": float(body.get("temperature") or 1.0),
                "gen_ai.request.top_p": float(body.get("top_p") or 1.0),
                "gen_ai.request.n": int(body.get("n") or 1),
            },
        )
        return _Handle(gateway, vllm, time.monotonic())

    def end(self, handle: _Handle, usage: dict[str, Any], timing: Any) -> None:
        now = time.monotonic()
        first = timing.first_token or now
        handle.vllm.set_attributes(
            {
                "gen_ai.usage.prompt_tokens": int(usage["prompt_tokens"]),
                "gen_ai.usage.completion_tokens": int(usage["completion_tokens"]),
                "gen_ai.latency.time_in_queue": timing.queue_s,
                "gen_ai.latency.time_to_first_token": first - handle.started,
                "gen_ai.latency.e2e": now - handle.started,
            }
        )
        handle.vllm.end()
        handle.gateway.end()

    def shutdown(self) -> None:
        for provider in self._providers:
            provider.shutdown()
