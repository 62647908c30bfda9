"""A decorated call: appsdk.observe vs langfuse.observe vs a bare OTel span vs no tracing."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import appsdk
from appsdk.batching import BatchExportProcessor
from benchmarks.common import NoOpExporter, interleaved, table

QUESTION = "What is the capital of France?"


def answer(question: str) -> str:
    return "Paris is the capital of " + question[-7:-1]


def _bare_span_variant() -> Any:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoOpExporter()))
    tracer = provider.get_tracer("bench")

    def bare(question: str) -> str:
        attributes = {
            "langfuse.observation.type": "span",
            "langfuse.observation.input": json.dumps({"args": [question], "kwargs": {}}),
        }
        with tracer.start_as_current_span("answer", attributes=attributes) as span:
            result = answer(question)
            span.set_attribute("langfuse.observation.output", result)
            return result

    return bare


def _langfuse_variant() -> Any:
    from langfuse import Langfuse, observe

    # Its own provider and a no-op exporter: the cost is the SDK's, not the network's.
    Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        base_url="http://127.0.0.1:9",
        tracer_provider=TracerProvider(),
        span_exporter=NoOpExporter(),
    )
    return observe()(answer)


def _appsdk_variant() -> Any:
    pipeline = appsdk.configure(local_store="never")
    pipeline.add_exporter(BatchExportProcessor(NoOpExporter(), name="noop"), None)
    return appsdk.observe()(answer)


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    variants = {
        "no tracing": lambda: answer(QUESTION),
        "bare OTel span (same attributes by hand)": (
            bare := _bare_span_variant(),
            lambda: bare(QUESTION),
        )[1],
        "langfuse.observe": (lf := _langfuse_variant(), lambda: lf(QUESTION))[1],
        "appsdk.observe (default policy)": (ours := _appsdk_variant(), lambda: ours(QUESTION))[1],
    }
    medians = interleaved(variants, calls=500 if quick else 2000, rounds=5 if quick else 15)
    base = medians["no tracing"]
    overhead = {name: value - base for name, value in medians.items()}
    ours_over = overhead["appsdk.observe (default policy)"]
    ratios = {
        "appsdk / langfuse.observe (target <= 0.25)": ours_over / overhead["langfuse.observe"],
        "appsdk / bare OTel span (target <= 2)": ours_over
        / overhead["bare OTel span (same attributes by hand)"],
    }
    rows = [(name, f"{medians[name]:.2f}", f"{overhead[name]:.2f}") for name in variants]
    text = table(rows, ("decorated call", "median us/call", "overhead us"))
    text += "\n\n" + table([(k, f"{v:.3f}") for k, v in ratios.items()], ("ratio", "value"))
    appsdk.shutdown()
    return text, ratios
