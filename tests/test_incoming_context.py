"""Context from outside is input like any other: an incoming tracestate, baggage and sampled
flag, and the names and ids given to ``trace_attributes``, reach no exporter, header or rule
unbounded or unguarded."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import baggage, propagate
from opentelemetry import context as context_api
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.span import TraceState

import appsdk
from appsdk import sim
from appsdk.sampling import Sampling, SamplingRule
from appsdk.testing import capture_spans
from appsdk.trace_context import (
    NAME_LIMIT,
    TAG_LIMIT,
    TRACE_STATE_MAX_CHARS,
    bounded_name,
    guard_trace_state,
)
from tests.servers import OTLPReceiver

MODEL = "sim-llama-3-8b"
MESSAGES = [{"role": "user", "content": "hi"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
API_KEY = "sk-proj-" + "a1B2c3D4e5" * 4
EMAIL = "bob@example.com"
MB = 1024 * 1024


@contextmanager
def incoming(flags: str = "01", **headers: str) -> Iterator[None]:
    """A request arrived with these headers: their context is current (as a web framework's
    instrumentation leaves it), under which the application's spans start."""
    carrier = {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-{flags}", **headers}
    token = context_api.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context_api.detach(token)


def hostile_tracestate() -> str:
    """What an attacker sends: two vendors' ordinary state, two members holding secrets, and
    28 long members (32 in all, the W3C maximum; 7.7 KB)."""
    members = [f"rojo={CALLER_SPAN}", "congo=t61rcWkgMzE", f"key={API_KEY}", f"mail={EMAIL}"]
    members += [f"pad{i}={chr(97 + i % 26) * 250}" for i in range(28)]
    header = ",".join(members)
    assert len(TraceState.from_header([header])) == 32  # OpenTelemetry takes it whole
    return header


def trace_states(receiver: OTLPReceiver) -> dict[str, str]:
    """Each exported span's trace_state, by span name, as the OTLP receiver decoded it."""
    states = {}
    for request in receiver.requests:
        message = ExportTraceServiceRequest()
        message.ParseFromString(request.body)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    states[span.name] = span.trace_state
    return states


def assert_guarded(state: str) -> None:
    assert len(state) <= TRACE_STATE_MAX_CHARS
    assert API_KEY not in state and "sk-proj" not in state and EMAIL not in state
    # The long members went first, from the end, until the rest fitted.
    assert state == f"rojo={CALLER_SPAN},congo=t61rcWkgMzE,pad0={'a' * 250}"


def test_an_incoming_tracestate_reaches_the_receiver_and_the_gateway_bounded_and_clean(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        sim.running(exporter=InMemorySpanExporter()) as simulator,
        appsdk.LLMDClient(base_url=simulator.base_url) as client,
    ):
        appsdk.configure(otlp_traces_endpoint=receiver.traces_url, local_store="never")

        @appsdk.observe()
        def handle() -> str:
            return client.chat(model=MODEL, messages=MESSAGES).text

        with caplog.at_level(logging.WARNING, "appsdk"), incoming(tracestate=hostile_tracestate()):
            handle()
        assert appsdk.flush()
        sent = simulator.received[-1].headers
    receiver.wait_for_spans(3)

    states = trace_states(receiver)
    assert set(states) >= {"handle", f"chat {MODEL}", "POST"}
    for state in states.values():
        assert_guarded(state)
    # The gateway (and vLLM behind it) got the same guarded state, in the same trace.
    assert_guarded(sent["tracestate"])
    assert sent["traceparent"].split("-")[1] == TRACE_ID
    # The application is told once, without the values.
    warned = [r.getMessage() for r in caplog.records if "tracestate" in r.getMessage()]
    assert len(warned) == 1 and API_KEY not in warned[0] and EMAIL not in warned[0]
    incoming_counts = appsdk.stats()["incoming"]
    assert incoming_counts["tracestate_secret"] >= 2 and incoming_counts["tracestate_over_bounds"]


def test_the_policys_own_detectors_judge_the_tracestate_too(receiver: OTLPReceiver) -> None:
    policy = appsdk.Policy(patterns=(("TICKET", re.compile(r"TCK-\d{4}")),))
    appsdk.configure(otlp_traces_endpoint=receiver.traces_url, local_store="never", policy=policy)

    @appsdk.observe()
    def handle() -> None:
        return None

    with incoming(tracestate=f"rojo={CALLER_SPAN},t=TCK-1234"):
        handle()
    assert appsdk.flush()
    receiver.wait_for_spans(1)
    assert trace_states(receiver) == {"handle": f"rojo={CALLER_SPAN}"}


def test_the_guard_cuts_long_members_first_then_from_the_end() -> None:
    members = [("a", "1" * 20), ("b", "2" * 200), ("c", "3" * 150), ("d", "4" * 120)]
    members += [("e", "5" * 120), ("f", "6" * 120), ("g", "7" * 120)]
    guarded = guard_trace_state(TraceState(members), lambda text: text)
    # b and c (over 128 characters) go first, then g from the end; what is left fits.
    assert list(guarded.state) == ["a", "d", "e", "f"]
    assert guarded.over_bounds == 3 and guarded.secrets == 0
    assert len(guarded.state.to_header()) <= TRACE_STATE_MAX_CHARS


def test_baggage_reaching_the_gateway_is_allow_listed_clean_and_bounded() -> None:
    allowed = ("tenant", "note", "big", "pad0", "pad1", "pad2", "plan")
    policy = appsdk.Policy(baggage_allow=allowed)
    header = f"user.id={EMAIL},tenant=acme,note=key%20{API_KEY}"
    with (
        sim.running(exporter=InMemorySpanExporter()) as simulator,
        capture_spans(policy=policy),
        appsdk.LLMDClient(base_url=simulator.base_url) as client,
    ):
        with incoming(baggage=header):
            # The application adds its own: one member over W3C's 4096 bytes, then three of
            # 3000 bytes (the third would take the header past 8192), then a small one.
            ctx = baggage.set_baggage("big", "x" * 5000)
            for i in range(3):
                ctx = baggage.set_baggage(f"pad{i}", "p" * 3000, ctx)
            ctx = baggage.set_baggage("plan", "pro", ctx)
            token = context_api.attach(ctx)
            try:
                client.chat(model=MODEL, messages=MESSAGES)
            finally:
                context_api.detach(token)
        sent = simulator.received[-1].headers["baggage"]
    members = dict(member.split("=", 1) for member in sent.split(","))
    assert list(members) == ["tenant", "pad0", "pad1", "plan"]
    assert members["tenant"] == "acme" and members["plan"] == "pro"
    assert len(sent.encode()) <= 8192
    assert "sk-proj" not in sent and "example.com" not in sent and "user.id" not in sent


# -- the caller's sampled flag ----------------------------------------------------------------


@appsdk.observe()
def child() -> str:
    return "c"


@appsdk.observe()
def handler() -> str:
    return child()


def exported_names(flags: str, sampling: Sampling | None = None, **options: Any) -> list[str]:
    """Names of the spans exported for one request arriving with ``flags``."""
    with capture_spans(sampling=sampling, **options) as captured:
        with incoming(flags):
            handler()
        appsdk.flush()
        return sorted(span.name for span in captured.spans)


@pytest.mark.parametrize(
    ("flags", "sampling", "expected"),
    [
        ("01", Sampling(default_ratio=0.0), []),
        ("03", Sampling(default_ratio=0.0), []),  # the SDK's flags: sampled + random
        ("01", Sampling(default_ratio=0.0, parent="trust"), ["child", "handler"]),
        ("00", Sampling(default_ratio=1.0), ["child", "handler"]),
        ("00", Sampling(default_ratio=1.0, parent="trust"), []),
    ],
)
def test_the_rules_decide_for_a_remote_parent_unless_told_to_trust_it(
    flags: str, sampling: Sampling, expected: list[str]
) -> None:
    assert exported_names(flags, sampling) == expected


def test_a_rule_matching_the_request_decides_whatever_the_callers_flag() -> None:
    sampling = Sampling(default_ratio=0.0, rules=(SamplingRule(user_id="vip", ratio=1.0),))
    with capture_spans(sampling=sampling) as captured:
        for user, flags in (("vip", "00"), ("someone", "01")):
            with incoming(flags), appsdk.trace_attributes(user_id=user):
                handler()
        appsdk.flush()
        users = {(span.attributes or {}).get("user.id") for span in captured.spans}
    assert users == {"vip"}


def test_the_parent_option_is_read_from_APPSDK_SAMPLING(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSDK_SAMPLING", '{"default_ratio": 0, "parent": "trust"}')
    assert exported_names("01") == ["child", "handler"]
    monkeypatch.setenv("APPSDK_SAMPLING", '{"default_ratio": 0}')
    assert exported_names("01") == []
    monkeypatch.setenv("APPSDK_SAMPLING", '{"parent": "sometimes"}')
    with pytest.raises(appsdk.ConfigError, match="APPSDK_SAMPLING"):
        appsdk.configure(local_store="never")


def test_without_rules_a_callers_flag_keeps_nothing_out_unless_an_otel_sampler_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert exported_names("00") == ["child", "handler"]
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    assert exported_names("00") == []  # OpenTelemetry's parent-based sampler, as named


def test_a_local_parent_is_followed_as_before() -> None:
    """``langfuse_trace_id`` makes a local, sampled parent: a 0% rule does not drop it."""
    with capture_spans(sampling=Sampling(default_ratio=0.0)) as captured:
        handler(langfuse_trace_id=TRACE_ID)  # type: ignore[call-arg]
        handler()
        appsdk.flush()
        traces = {f"{span.context.trace_id:032x}" for span in captured.spans}
    assert traces == {TRACE_ID}


# -- names and ids given to trace_attributes ----------------------------------------------------


def test_huge_names_and_ids_arrive_cut_and_marked_and_the_export_stays_small(
    receiver: OTLPReceiver,
) -> None:
    huge = "u" * MB
    marker = f"...[truncated {MB - NAME_LIMIT} chars]"
    appsdk.configure(otlp_traces_endpoint=receiver.traces_url, local_store="never")

    @appsdk.observe()
    def leaf(i: int) -> int:
        return i

    @appsdk.observe()
    def root() -> None:
        for i in range(5):
            leaf(i)

    with appsdk.trace_attributes(
        user_id=huge,
        session_id=huge,
        trace_name=huge,
        tags=[huge, *(f"t{i}" for i in range(1000))],
        metadata={huge: "v", "small": "w"},
    ):
        root()
    assert appsdk.flush()
    spans = receiver.wait_for_spans(6)

    expected = "u" * NAME_LIMIT + marker
    for span in spans:
        attributes = span.attributes
        assert attributes["user.id"] == expected
        assert attributes["session.id"] == expected
        assert attributes["langfuse.trace.name"] == expected
        tags = attributes["langfuse.trace.tags"]
        assert tags[0] == expected and len(tags) == TAG_LIMIT + 1
        assert tags[-1] == f"[truncated {1001 - TAG_LIMIT} tags]"
        assert attributes[f"langfuse.trace.metadata.{expected}"] == '"v"'
        assert attributes["langfuse.trace.metadata.small"] == '"w"'
    body = sum(len(request.body) for request in receiver.requests)
    assert body < 64 * 1024, body  # six spans; unbounded, each would carry 5 MB


def test_sampling_rules_see_the_cut_names_that_langfuse_shows() -> None:
    huge = "vip-" + "9" * MB
    rule = SamplingRule(user_id=bounded_name(huge), ratio=1.0)
    with capture_spans(sampling=Sampling(default_ratio=0.0, rules=(rule,))) as captured:
        with appsdk.trace_attributes(user_id=huge):
            handler()
        appsdk.flush()
        assert sorted(span.name for span in captured.spans) == ["child", "handler"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("short", "short"),
        ("x" * NAME_LIMIT, "x" * NAME_LIMIT),
        ("x" * (NAME_LIMIT + 5), "x" * NAME_LIMIT + "...[truncated 5 chars]"),
        # A word the cut would split, begun lately (an address, a key), goes whole.
        ("x" * 180 + f" {EMAIL} tail" * 3, "x" * 180 + f" {EMAIL}" + "...[truncated 47 chars]"),
    ],
)
def test_bounded_name(text: str, expected: str) -> None:
    assert bounded_name(text) == expected
