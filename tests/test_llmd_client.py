"""The llm-d client against the simulator: trace continuity, headers, errors, streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry import baggage
from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import appsdk
from appsdk import sim
from appsdk.llmd import (
    AuthenticationError,
    BadRequestError,
    LLMDConnectionError,
    LLMDError,
    ModelNotFoundError,
    NoEndpointsError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseError,
    ServerError,
    StreamError,
    UnavailableError,
)
from appsdk.testing import CapturedObservation, SpanCapture, capture_spans

MODEL = "sim-llama-3-8b"
MESSAGES = [{"role": "user", "content": "What does llm-d do?"}]


@dataclass
class Env:
    sim: sim.Simulator
    downstream: InMemorySpanExporter
    captured: SpanCapture

    def generations(self) -> list[CapturedObservation]:
        return [o for o in self.captured.observations() if o.type == "generation"]

    def downstream_spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.downstream.get_finished_spans() if s.name == name]


@pytest.fixture
def env() -> Iterator[Env]:
    downstream = InMemorySpanExporter()
    with sim.running(exporter=downstream) as simulator, capture_spans() as captured:
        yield Env(simulator, downstream, captured)


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


def test_one_trace_runs_from_the_app_through_the_gateway_into_vllm(env: Env) -> None:
    @appsdk.observe(as_type="chain")
    def rag() -> str:
        with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
            return client.chat(model=MODEL, messages=MESSAGES, stream=False).text  # type: ignore[union-attr]

    rag()
    root = env.captured.by_name("rag")
    generation = env.captured.by_name(f"chat {MODEL}")
    http = env.captured.by_name("POST")
    (gateway,) = env.downstream_spans("gateway.request")
    (vllm,) = env.downstream_spans("llm_request")
    assert generation.parent_id == root.id and http.parent_id == generation.id
    assert f"{gateway.context.trace_id:032x}" == root.trace_id
    assert gateway.parent is not None and _hex(gateway.parent.span_id) == http.id
    assert vllm.parent is not None and vllm.parent.span_id == gateway.context.span_id
    assert generation.model == MODEL
    assert generation.usage == {"input": 4, "output": 12, "total": 16}
    assert vllm.attributes is not None and vllm.attributes["gen_ai.usage.prompt_tokens"] == 4
    traceparent = env.sim.received[-1].headers["traceparent"]
    assert int(traceparent.split("-")[3], 16) & 0x01, "the sampled flag must be set"


def test_a_streamed_generation_records_usage_and_time_to_first_token(env: Env) -> None:
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url) as client,
        client.chat(model=MODEL, messages=MESSAGES, stream=True) as stream,  # type: ignore[union-attr]
    ):
        chunks = list(stream)
    assert chunks and stream.usage is not None and stream.usage.completion_tokens == 12
    body = env.sim.received[-1].body
    assert body["stream_options"] == {"include_usage": True}
    (generation,) = env.generations()
    assert generation.usage == {"input": 4, "output": 12, "total": 16}
    assert "langfuse.observation.completion_start_time" in generation.attributes
    assert generation.output == [{"role": "assistant", "content": stream.text}]


def test_request_ids_llmd_options_and_session_affinity(env: Env) -> None:
    options = appsdk.LLMDOptions(objective="critical", fairness_id="tenant-a", slo_ttft_ms=500)
    with appsdk.LLMDClient(
        base_url=env.sim.base_url, options=options, session_affinity=True
    ) as client:
        first = client.chat(model=MODEL, messages=MESSAGES, request_id="req-1", fairness_id="b")
        client.chat(model=MODEL, messages=MESSAGES, slo_tpot_ms=20, model_rewrite="lora-x")
        client.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    one, two, plain = (r.headers for r in env.sim.received)
    assert first.id == "chatcmpl-req-1"  # type: ignore[union-attr]
    assert one["x-request-id"] == "req-1" and one["x-llm-d-inference-fairness-id"] == "b"
    assert one["x-llm-d-inference-objective"] == "critical" and one["x-llm-d-slo-ttft-ms"] == "500"
    assert "x-session-token" not in one
    assert two["x-session-token"] == client.session_token
    assert two["x-llm-d-slo-tpot-ms"] == "20" and two["x-llm-d-model-name-rewrite"] == "lora-x"
    assert len(two["x-request-id"]) == 32 and two["x-request-id"] != plain["x-request-id"]
    assert plain["traceparent"] and plain["x-session-token"] == client.session_token
    assert env.generations()[0].attributes["llm_d.request_id"] == "req-1"


def test_baggage_reaches_the_gateway_only_for_allow_listed_keys(env: Env) -> None:
    ctx = baggage.set_baggage("user.id", "alice@example.com")
    ctx = baggage.set_baggage("tenant", "acme", ctx)
    token = context_api.attach(ctx)
    try:
        with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
            client.chat(model=MODEL, messages=MESSAGES)
        allowed = appsdk.Policy(baggage_allow=("tenant",))
        with appsdk.LLMDClient(base_url=env.sim.base_url, policy=allowed) as client:
            client.chat(model=MODEL, messages=MESSAGES)
    finally:
        context_api.detach(token)
    default, allow_listed = (r.headers for r in env.sim.received)
    assert "baggage" not in default
    assert allow_listed["baggage"] == "tenant=acme"


def test_openai_call_shapes_work_unchanged(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        chat = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
        text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=2)
        vectors = client.embeddings.create(model="sim-embed", input=["a", "b"])
        models = client.models.list()
    assert chat.choices[0].finish_reason == "length" and len(chat.text.split()) == 3
    assert text.text.split() == ["Simulated", "answer"]
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8
    assert MODEL in models.ids()
    types = sorted(o.type for o in env.captured.observations() if o.name != "GET")
    assert types.count("generation") == 2 and "embedding" in types


def test_bad_arguments_get_a_typed_error_naming_the_field(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        with pytest.raises(TypeError, match="model="):
            client.chat(messages=MESSAGES)
        with pytest.raises(TypeError, match="messages="):
            client.chat(model=MODEL)
    assert env.sim.received == []


ERROR_CASES = [
    (400, "json", None, BadRequestError),
    (401, "flat", None, AuthenticationError),
    (403, "picker", None, PermissionDeniedError),
    (404, "picker", None, ModelNotFoundError),
    (412, "picker", None, BadRequestError),
    (429, "picker", "rejected-saturated", RateLimitedError),
    (429, "json", None, RateLimitedError),
    (500, "flat", None, ServerError),
    (503, "picker", "rejected-no-endpoints", NoEndpointsError),
    (503, "json", None, UnavailableError),
]


@pytest.mark.parametrize(("status", "shape", "dropped", "kind"), ERROR_CASES)
def test_gateway_errors_map_to_typed_exceptions_and_error_generations(
    env: Env, status: int, shape: str, dropped: str | None, kind: type[LLMDError]
) -> None:
    headers = {"x-sim-status": str(status), "x-sim-error-shape": shape}
    if dropped:
        headers["x-sim-dropped-reason"] = dropped
    no_retry = appsdk.RetryPolicy(max_attempts=1)
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url, retry=no_retry) as client,
        pytest.raises(kind) as caught,
    ):
        client.chat(model=MODEL, messages=MESSAGES, extra_headers=headers, request_id="r-9")
    error = caught.value
    assert type(error) is kind
    assert error.status == status and error.request_id == "r-9"
    assert "simulated failure" in str(error)
    if dropped:
        assert error.dropped_reason == dropped and dropped in str(error)
    (generation,) = env.generations()
    assert generation.level == "ERROR"
    assert generation.attributes["error.type"] == kind.__name__


def test_retries_honour_retry_after_then_succeed(env: Env) -> None:
    headers = {
        "x-sim-status": "429",
        "x-sim-fail-times": "2",
        "x-sim-retry-after": "0.05",
        "x-sim-error-shape": "picker",
        "x-sim-dropped-reason": "rejected-saturated",
    }
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        result = client.chat(model=MODEL, messages=MESSAGES, extra_headers=headers)
    assert result.text  # type: ignore[union-attr]
    assert len(env.sim.received) == 3
    assert len({r.headers["x-request-id"] for r in env.sim.received}) == 1
    (generation,) = env.generations()
    assert generation.level == "DEFAULT"
    span = next(s for s in env.captured.spans if s.name == f"chat {MODEL}")
    retries = [e for e in span.events if e.name == "retry"]
    assert [e.attributes["delay_s"] for e in retries] == [0.05, 0.05]  # type: ignore[index]
    assert [e.attributes["error.type"] for e in retries] == ["RateLimitedError"] * 2  # type: ignore[index]


def test_a_retry_after_longer_than_the_policy_allows_is_not_waited_for(env: Env) -> None:
    headers = {"x-sim-status": "503", "x-sim-retry-after": "3600"}
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url) as client,
        pytest.raises(UnavailableError) as caught,
    ):
        client.chat(model=MODEL, messages=MESSAGES, extra_headers=headers)
    assert caught.value.retry_after == 3600 and len(env.sim.received) == 1


def test_connection_refused_is_retried_then_raised_as_a_connection_error() -> None:
    with capture_spans() as captured:
        free_port = _free_port()
        fast = appsdk.RetryPolicy(max_attempts=2, initial_backoff_s=0.001)
        with (
            appsdk.LLMDClient(base_url=f"http://127.0.0.1:{free_port}", retry=fast) as client,
            pytest.raises(LLMDConnectionError),
        ):
            client.chat(model=MODEL, messages=MESSAGES)
        generation = next(o for o in captured.observations() if o.type == "generation")
        assert generation.level == "ERROR"
        span = next(s for s in captured.spans if s.name == f"chat {MODEL}")
        assert [e.name for e in span.events] == ["retry", "exception"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_error_event_mid_stream_raises_and_keeps_what_arrived(env: Env) -> None:
    headers = {"x-sim-stream-error-after": "3"}
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=headers)
        received = []
        with pytest.raises(StreamError, match="mid-stream"):
            for chunk in stream:  # type: ignore[union-attr]
                received.append(chunk.text)
    (generation,) = env.generations()
    assert generation.level == "ERROR" and generation.attributes["error.type"] == "StreamError"
    assert generation.output == [{"role": "assistant", "content": "".join(received)}]


def test_malformed_answers_raise_response_errors(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        with pytest.raises(ResponseError, match="not JSON"):
            client.chat(model=MODEL, messages=MESSAGES, extra_headers={"x-sim-garbage": "json"})
        with pytest.raises(ResponseError, match="malformed stream event"):
            list(
                client.chat(
                    model=MODEL,
                    messages=MESSAGES,
                    stream=True,  # type: ignore[call-overload]
                    extra_headers={"x-sim-garbage": "sse"},
                )
            )
    assert [g.level for g in env.generations()] == ["ERROR", "ERROR"]


def test_breaking_out_of_a_stream_ends_the_span_and_frees_the_connection(env: Env) -> None:
    one_connection = httpx.Limits(max_connections=1)
    with appsdk.LLMDClient(
        base_url=env.sim.base_url, limits=one_connection, timeout=httpx.Timeout(10, pool=2)
    ) as client:
        for chunk in client.chat(model=MODEL, messages=MESSAGES, stream=True):  # type: ignore[union-attr]
            assert chunk is not None
            break
        # with the only connection still held, this call would time out waiting for the pool
        assert client.chat(model=MODEL, messages=MESSAGES).text  # type: ignore[union-attr]
    cancelled, complete = env.generations()
    assert cancelled.level == "WARNING" and "closed by the caller" in str(cancelled.status_message)
    assert json.loads(cancelled.attributes["langfuse.observation.metadata.cancelled"]) is True
    assert complete.level == "DEFAULT"


async def test_200_concurrent_async_streams_keep_their_traces_apart(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(
        base_url=env.sim.base_url, limits=httpx.Limits(max_connections=50)
    ) as client:

        @appsdk.observe(as_type="agent")
        async def agent(index: int) -> str:
            stream = await client.chat(
                model=MODEL,
                messages=[{"role": "user", "content": f"question {index}"}],
                stream=True,
            )
            async with stream:  # type: ignore[union-attr]
                return "".join([chunk.text async for chunk in stream])  # type: ignore[union-attr]

        answers = await asyncio.gather(*(agent(i) for i in range(200)))
    assert all(f"question {i}" in answer for i, answer in enumerate(answers))
    observations = env.captured.observations()
    agents = {o.id: o for o in observations if o.name == "agent"}
    generations = [o for o in observations if o.type == "generation"]
    assert len(agents) == 200 and len(generations) == 200
    assert len({a.trace_id for a in agents.values()}) == 200
    for generation in generations:
        parent = agents[generation.parent_id or ""]
        assert generation.trace_id == parent.trace_id
        question = json.loads(parent.attributes["langfuse.observation.input"])["args"][0]
        assert f"question {question}" in generation.input[0]["content"]
        assert generation.usage == {"input": 2, "output": 12, "total": 14}
    gateway_traces = {f"{s.context.trace_id:032x}" for s in env.downstream_spans("gateway.request")}
    assert gateway_traces == {a.trace_id for a in agents.values()}
