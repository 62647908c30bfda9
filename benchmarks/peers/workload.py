"""One SDK's side of the peer benchmark, run by that SDK's own interpreter (stdlib + the SDK).

    python workload.py SDK ENDPOINT MODE [JSON]

SDK is one of ``SETUPS``; ENDPOINT is the receiver's base URL (``http://127.0.0.1:PORT``).
Every SDK traces the same two functions (``outer`` calls ``inner``; both take a string of the
payload size and return another), configured the way its own documentation shows, exporting
OTLP/HTTP to the receiver with its default batching. Modes:

- ``calls`` ``{"sizes": [[bytes, calls], ...]}``: per size, time the calls on this thread, then
  the flush; prints ``@@RESULT`` and one JSON object per size.
- ``threads`` ``{"threads": [1, 2, ...], "calls": N, "size": bytes}``: N calls split across T
  threads, wall time up to the end of the flush, per T.
- ``start``: configure, decorate, one call, flush; prints ``@@READY`` (the parent times it).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
Setup = tuple[Decorator, Decorator, Callable[[], object]]

PROSE = (
    "Paris is the capital and largest city of France, with an estimated population of "
    "2,102,650 residents in January 2023 in an area of more than 105 km2. Since the 17th "
    "century it has been one of the world's major centres of finance, diplomacy, commerce, "
    "culture, fashion and gastronomy. The retrieved passages agree on the answer; the third "
    "one (score 0.82) also mentions the Seine, which flows through the city for 13 km. "
)


def payload(size: int, seed: int) -> str:
    """``size`` characters of words drawn from ``PROSE``: gzips ~5x, like prose, not ~100x."""
    words = PROSE.split()
    rng = random.Random(seed)
    parts, length = [], 0
    while length < size:
        word = rng.choice(words)
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts)[:size]


def _otel_provider(endpoint: str) -> Any:
    # The SDK's standard configuration: the exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    # which the parent set to ``endpoint + "/v1/traces"``.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def setup_none(endpoint: str) -> Setup:
    def identity(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    return identity, identity, lambda: None


def setup_appsdk(endpoint: str) -> Setup:
    import appsdk

    appsdk.configure(otlp_traces_endpoint=endpoint + "/v1/traces", local_store="never")
    return appsdk.observe(), appsdk.observe(), lambda: appsdk.flush(300)


def setup_otel(endpoint: str) -> Setup:
    """A bare OpenTelemetry SDK span carrying the same attributes as appsdk, set by hand."""
    provider = _otel_provider(endpoint)
    tracer = provider.get_tracer("bench")

    def observe(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            attributes = {
                "langfuse.observation.type": "span",
                "langfuse.observation.input": json.dumps({"args": args, "kwargs": kwargs}),
            }
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                result = fn(*args, **kwargs)
                span.set_attribute("langfuse.observation.output", result)
                return result

        return wrapper

    return observe, observe, lambda: provider.force_flush(300_000)


def setup_langfuse(endpoint: str) -> Setup:
    from langfuse import Langfuse, observe

    client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=endpoint)
    return observe(), observe(), client.flush


def setup_traceloop(endpoint: str) -> Setup:
    from opentelemetry import trace
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task, workflow

    Traceloop.init(app_name="bench", api_endpoint=endpoint, telemetry_enabled=False)
    provider: Any = trace.get_tracer_provider()
    return workflow(name="outer"), task(name="inner"), lambda: provider.force_flush(300_000)


def setup_openinference(endpoint: str) -> Setup:
    # As its docs show: OpenInference's TracerProvider, then @tracer.chain on each function.
    from openinference.instrumentation import TracerProvider
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("bench")
    return tracer.chain, tracer.chain, lambda: provider.force_flush(300_000)


def setup_logfire(endpoint: str) -> Setup:
    import logfire
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
    logfire.configure(
        send_to_logfire=False,
        console=False,
        additional_span_processors=[BatchSpanProcessor(exporter)],
    )
    decorate = logfire.instrument(record_return=True)
    return decorate, decorate, lambda: logfire.force_flush(300_000)


SETUPS: dict[str, Callable[[str], Setup]] = {
    "none": setup_none,
    "appsdk": setup_appsdk,
    "otel": setup_otel,
    "langfuse": setup_langfuse,
    "traceloop": setup_traceloop,
    "openinference": setup_openinference,
    "logfire": setup_logfire,
}


_SHIFTS = 64


def texts(size: int, seed: int) -> Callable[[int], str]:
    """The ``i``-th text of that size: a new object with new content per call (a slice of
    ``payload`` at one of 64 offsets), as an application's calls get. The same object on every
    call would let an SDK that remembers what it rendered skip work no application skips."""
    base = payload(size + _SHIFTS, seed)
    return lambda i: base[i % _SHIFTS : i % _SHIFTS + size]


ANSWERS: dict[int, Callable[[int], str]] = {}


def prepare(size: int) -> Callable[[int], str]:
    """The inputs of that size; ``inner`` answers each with another text of the same size."""
    ANSWERS.setdefault(size, texts(size, 7))
    return texts(size, 0)


def build(sdk: str, endpoint: str) -> tuple[Callable[[str], str], Callable[[], object]]:
    """The traced ``outer(text)`` (which calls the traced ``inner``) and the SDK's flush."""
    decorate_outer, decorate_inner, flush = SETUPS[sdk](endpoint)
    answered = itertools.count()

    @decorate_inner
    def inner(text: str) -> str:
        return ANSWERS[len(text)](next(answered))

    @decorate_outer
    def outer(text: str) -> str:
        return inner(text)

    return outer, flush


def _received(endpoint: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(endpoint + "/stats", timeout=120) as response:
        result: dict[str, int] = json.loads(response.read())
        return result


def mode_calls(sdk: str, endpoint: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    outer, flush = build(sdk, endpoint)
    results = []
    for size, calls in options["sizes"]:
        text = prepare(size)
        for i in range(max(2, calls // 10)):  # warm caches, lazy imports, connections
            outer(text(i))
        flush()
        before = _received(endpoint)
        started = time.perf_counter()
        for i in range(calls):
            outer(text(i))
        called = time.perf_counter()
        flush()
        flushed = time.perf_counter()
        after = _received(endpoint)
        results.append(
            {
                "size": size,
                "calls": calls,
                "per_call_us": (called - started) / calls * 1e6,
                "total_us": (flushed - started) / calls * 1e6,
                "spans": after.get("spans", 0) - before.get("spans", 0),
                "bytes_wire": after.get("bytes_wire", 0) - before.get("bytes_wire", 0),
                "bytes_decoded": after.get("bytes_decoded", 0) - before.get("bytes_decoded", 0),
            }
        )
    return results


def mode_threads(sdk: str, endpoint: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    outer, flush = build(sdk, endpoint)
    size, calls = options["size"], options["calls"]
    text = prepare(size)
    for i in range(100):
        outer(text(i))
    flush()
    results = []
    for count in options["threads"]:
        each = calls // count

        def work(each: int = each) -> None:
            for i in range(each):
                outer(text(i))

        workers = [threading.Thread(target=work) for _ in range(count)]
        before = _received(endpoint)
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        flush()
        elapsed = time.perf_counter() - started
        after = _received(endpoint)
        spans = after.get("spans", 0) - before.get("spans", 0)
        results.append(
            {"threads": count, "sent": 2 * each * count, "spans": spans, "seconds": elapsed}
        )
    return results


def main() -> None:
    sdk, endpoint, mode = sys.argv[1:4]
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    if mode == "start":
        outer, flush = build(sdk, endpoint)
        outer(prepare(32)(0))
        print("@@CALLED", flush=True)
        flush()
        print("@@READY", flush=True)
        return
    run = mode_calls if mode == "calls" else mode_threads
    print("@@RESULT " + json.dumps(run(sdk, endpoint, options)), flush=True)


if __name__ == "__main__":
    main()
