"""appsdk's OTLP bytes decode to exactly the message the OpenTelemetry SDK's encoder builds."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from appsdk.otlp_encoding import encode_request

keys = st.text(min_size=1, max_size=12)
scalars = st.one_of(
    st.text(max_size=40),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(
    scalars,
    st.lists(st.text(max_size=8), max_size=4).map(tuple),
    st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=4).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
)
attributes = st.dictionaries(keys, values, max_size=6)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)


@st.composite
def span_plans(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(st.text(max_size=20)),
        "tracer": draw(st.sampled_from(["a", "b", "c"])),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "events": draw(st.lists(st.tuples(st.text(max_size=8), attributes), max_size=3)),
        "links": draw(
            st.lists(st.tuples(trace_ids, span_ids, st.booleans(), attributes), max_size=2)
        ),
        "status": draw(
            st.sampled_from(
                [None, Status(StatusCode.OK), Status(StatusCode.ERROR, "boom: é"), Status()]
            )
        ),
        "parent": draw(st.one_of(st.none(), st.tuples(trace_ids, span_ids, st.booleans()))),
        "state": draw(st.sampled_from([None, TraceState([("vendor", "v1"), ("k", "2")])])),
        "child": draw(st.booleans()),
    }


def finished(plans: list[dict[str, Any]]) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "n": 3, "tags": ("x", "y")})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracers = {
        "a": provider.get_tracer("a", "1.0", schema_url="https://opentelemetry.io/schemas/1"),
        "b": provider.get_tracer("b"),
        "c": provider.get_tracer("a", "1.0", schema_url="https://opentelemetry.io/schemas/1"),
    }
    for plan in plans:
        context = None
        if plan["parent"] is not None:
            trace_id, span_id, remote = plan["parent"]
            parent = SpanContext(
                trace_id,
                span_id,
                is_remote=remote,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
                trace_state=plan["state"],
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        links = [
            Link(SpanContext(t, s, is_remote=r, trace_flags=TraceFlags(1)), a)
            for t, s, r, a in plan["links"]
        ]
        tracer = tracers[plan["tracer"]]
        with tracer.start_as_current_span(
            plan["name"],
            context=context,
            kind=plan["kind"],
            attributes=plan["attributes"],
            links=links,
        ) as span:
            for name, event_attributes in plan["events"]:
                span.add_event(name, event_attributes)
            if plan["status"] is not None:
                span.set_status(plan["status"])
            if plan["child"]:
                with tracer.start_as_current_span("child") as child:
                    child.set_attribute("inner", 1)
    return list(memory.get_finished_spans())


def same_message(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    theirs = encode_spans(spans)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(
        deterministic=True
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(span_plans(), min_size=1, max_size=5))
def test_generated_spans_encode_to_the_sdk_message(plans: list[dict[str, Any]]) -> None:
    same_message(finished(plans))


def test_edge_values_encode_as_the_sdk_does() -> None:
    plan: dict[str, Any] = {
        "name": "edges",
        "tracer": "a",
        "kind": SpanKind.CLIENT,
        "attributes": {
            "nan": math.nan,
            "inf": -math.inf,
            "min": -(2**63),
            "max": 2**63 - 1,
            "zero": 0,
            "empty": "",
            "unicode": "日本語 \u2028 \x00",
            "empty-tuple": (),
        },
        "events": [("", {})],
        "links": [],
        "status": Status(StatusCode.ERROR),
        "parent": None,
        "state": None,
        "child": False,
    }
    same_message(finished([plan]))


def test_an_integer_beyond_int64_is_left_out_as_the_sdk_leaves_it_out() -> None:
    plan: dict[str, Any] = {
        "name": "big",
        "tracer": "b",
        "kind": SpanKind.INTERNAL,
        "attributes": {"ok": 1, "huge": 2**64},
        "events": [],
        "links": [],
        "status": None,
        "parent": None,
        "state": None,
        "child": False,
    }
    (span,) = finished([plan])
    decoded = ExportTraceServiceRequest.FromString(encode_request([span]))
    (encoded,) = decoded.resource_spans[0].scope_spans[0].spans
    assert [kv.key for kv in encoded.attributes] == ["ok"]
