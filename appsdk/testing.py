"""Test helpers: capture appsdk's spans in memory and read them as Langfuse would.

Example::

    from appsdk.testing import capture_spans

    def test_answer_is_traced():
        with capture_spans() as captured:
            answer("why?")
        (obs,) = captured.observations()
        assert obs.type == "chain"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from appsdk import runtime as _runtime
from appsdk import semconv
from appsdk.policy import Policy
from appsdk.render import decoded

__all__ = ["CapturedObservation", "SpanCapture", "capture_spans"]


@dataclass(frozen=True)
class CapturedObservation:
    """One span as Langfuse reads it: its ``langfuse.observation.*`` attributes (the keys of
    :mod:`appsdk.semconv`), decoded."""

    name: str
    type: str
    id: str
    trace_id: str
    parent_id: str | None
    input: Any
    output: Any
    level: str
    status_message: str | None
    model: str | None
    usage: Any
    cost: Any
    attributes: dict[str, Any] = field(repr=False)


class _Collector:
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.spans.append(span)


@dataclass
class SpanCapture:
    """The spans ended inside :func:`capture_spans`, after the egress policy."""

    _collector: _Collector

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._collector.lock:
            return list(self._collector.spans)

    def observations(self) -> list[CapturedObservation]:
        result = []
        for span in self.spans:
            attrs = dict(span.attributes or {})
            ctx = span.get_span_context()
            assert ctx is not None
            result.append(
                CapturedObservation(
                    name=span.name,
                    type=str(attrs.get(semconv.LF_TYPE, "span")),
                    id=f"{ctx.span_id:016x}",
                    trace_id=f"{ctx.trace_id:032x}",
                    parent_id=f"{span.parent.span_id:016x}" if span.parent else None,
                    input=decoded(attrs.get(semconv.LF_INPUT)),
                    output=decoded(attrs.get(semconv.LF_OUTPUT)),
                    level=str(attrs.get(semconv.LF_LEVEL, "DEFAULT")),
                    status_message=attrs.get(semconv.LF_STATUS_MESSAGE),  # type: ignore[arg-type]
                    model=attrs.get(semconv.LF_MODEL) or attrs.get(semconv.GEN_AI_RESPONSE_MODEL),  # type: ignore[arg-type]
                    usage=decoded(attrs.get(semconv.LF_USAGE)),
                    cost=decoded(attrs.get(semconv.LF_COST)),
                    attributes=attrs,
                )
            )
        return result

    def by_name(self, name: str) -> CapturedObservation:
        matches = [o for o in self.observations() if o.name == name]
        if len(matches) != 1:
            raise AssertionError(f"expected one observation named {name!r}, got {len(matches)}")
        return matches[0]


class _CaptureProcessor:
    """Records synchronously (no worker, no queue): tests see a span as soon as it ends."""

    name = "capture"

    def __init__(self, collector: _Collector) -> None:
        self.collector = collector

    def on_end(self, span: ReadableSpan) -> None:
        self.collector.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self, timeout_s: float = 2.0) -> None:
        return None

    def snapshot(self) -> dict[str, int]:
        return {"exported": len(self.collector.spans)}


@contextmanager
def capture_spans(*, policy: Policy | None = None, **options: Any) -> Iterator[SpanCapture]:
    """Configure appsdk with nothing but an in-memory capture; shut it down afterwards."""
    options.setdefault("local_store", "never")
    pipeline = _runtime.configure(policy=policy, **options)
    collector = _Collector()
    pipeline.add_exporter(_CaptureProcessor(collector), None)
    try:
        yield SpanCapture(collector)
    finally:
        _runtime.shutdown()
