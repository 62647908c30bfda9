"""The llm-d client against the simulator (trace continuity, llm-d headers, errors, streams)
and against the openai-compatibility server (construction, tools, bounded answers)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry import baggage
from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import appsdk
from appsdk import sim
from appsdk.llmd import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    LLMDConnectionError,
    LLMDError,
    LLMDTimeoutError,
    ModelNotFoundError,
    NoEndpointsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    UnavailableError,
)
from appsdk.testing import CapturedObservation, SpanCapture, capture_spans
from tests.openai_server import MODEL as TEST_MODEL
from tests.openai_server import OpenAIServer, openai_server
from tests.servers import url_of

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
            return client.chat(model=MODEL, messages=MESSAGES, stream=False).text

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
        client.chat(model=MODEL, messages=MESSAGES, stream=True) as stream,
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
    assert first.id == "chatcmpl-req-1"
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
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            client.chat(model=MODEL, messages=[{"role": "user", "content": object()}])
    assert env.sim.received == []
    assert env.generations() == []


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
    assert result.text
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


def test_connection_refused_is_retried_then_raised_as_a_connection_error(
    reserved: socket.socket,
) -> None:
    with capture_spans() as captured:
        refusing = url_of(reserved)
        fast = appsdk.RetryPolicy(max_attempts=2, initial_backoff_s=0.001)
        with (
            appsdk.LLMDClient(base_url=refusing, retry=fast) as client,
            pytest.raises(LLMDConnectionError),
        ):
            client.chat(model=MODEL, messages=MESSAGES)
        generation = next(o for o in captured.observations() if o.type == "generation")
        assert generation.level == "ERROR"
        span = next(s for s in captured.spans if s.name == f"chat {MODEL}")
        assert [e.name for e in span.events] == ["retry", "exception"]


def test_an_error_event_mid_stream_raises_and_keeps_what_arrived(env: Env) -> None:
    headers = {"x-sim-stream-error-after": "3"}
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=headers)
        received = []
        with pytest.raises(StreamError, match="mid-stream"):
            for chunk in stream:
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
                    stream=True,
                    extra_headers={"x-sim-garbage": "sse"},
                )
            )
    assert [g.level for g in env.generations()] == ["ERROR", "ERROR"]


def test_breaking_out_of_a_stream_ends_the_span_and_frees_the_connection(env: Env) -> None:
    one_connection = httpx.Limits(max_connections=1)
    with appsdk.LLMDClient(
        base_url=env.sim.base_url, limits=one_connection, timeout=httpx.Timeout(10, pool=2)
    ) as client:
        for chunk in client.chat(model=MODEL, messages=MESSAGES, stream=True):
            assert chunk is not None
            break
        # with the only connection still held, this call would time out waiting for the pool
        assert client.chat(model=MODEL, messages=MESSAGES).text
    cancelled, complete = env.generations()
    assert cancelled.level == "WARNING" and "closed by the caller" in str(cancelled.status_message)
    assert json.loads(cancelled.attributes["langfuse.observation.metadata.cancelled"]) is True
    assert complete.level == "DEFAULT"


async def test_100_concurrent_async_streams_keep_their_traces_apart(env: Env) -> None:
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
            async with stream:
                return "".join([chunk.text async for chunk in stream])

        # A task group, not gather: should one stream fail, the others are cancelled and
        # their connections closed before the client is, rather than left to the collector.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(agent(i)) for i in range(100)]
        answers = [task.result() for task in tasks]
    assert all(f"question {i}" in answer for i, answer in enumerate(answers))
    observations = env.captured.observations()
    agents = {o.id: o for o in observations if o.name == "agent"}
    generations = [o for o in observations if o.type == "generation"]
    assert len(agents) == 100 and len(generations) == 100
    assert len({a.trace_id for a in agents.values()}) == 100
    for generation in generations:
        parent = agents[generation.parent_id or ""]
        assert generation.trace_id == parent.trace_id
        question = json.loads(parent.attributes["langfuse.observation.input"])["args"][0]
        assert f"question {question}" in generation.input[0]["content"]
        assert generation.usage == {"input": 2, "output": 12, "total": 14}
    gateway_traces = {f"{s.context.trace_id:032x}" for s in env.downstream_spans("gateway.request")}
    assert gateway_traces == {a.trace_id for a in agents.values()}


# -- coming from openai: construction, usage chunk, models ------------------------------------


@pytest.fixture(scope="module")
def vllm() -> Iterator[OpenAIServer]:
    """The openai-compatibility server without ``GET /v1/models/{id}``, as vLLM serves."""
    with openai_server(serve_retrieve=False) as running:
        yield running


def test_base_url_with_or_without_v1_and_the_openai_environment(
    vllm: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for base_url in (vllm.url, vllm.base_url, vllm.base_url + "/"):
        with appsdk.LLMDClient(base_url=base_url, api_key="sk-a") as client:
            assert client.chat(model=TEST_MODEL, messages=MESSAGES).choices[0].message.content
        seen = vllm.last()
        assert seen.path == "/v1/chat/completions"
        assert seen.headers["authorization"] == "Bearer sk-a"
    monkeypatch.setenv("OPENAI_BASE_URL", vllm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with appsdk.LLMDClient() as client:
        client.chat(model=TEST_MODEL, messages=MESSAGES)
        assert client.api_key == "sk-from-env"
    assert vllm.last().headers["authorization"] == "Bearer sk-from-env"
    # A base URL given in code never carries the environment's key to another host.
    with appsdk.LLMDClient(base_url=vllm.base_url) as client:
        client.chat(model=TEST_MODEL, messages=MESSAGES)
    assert "authorization" not in vllm.last().headers
    with pytest.raises(TypeError, match="not both"):
        appsdk.LLMDClient(retry=appsdk.RetryPolicy(), max_retries=1)


def test_a_wrong_path_says_so_instead_of_blaming_the_model(vllm: OpenAIServer) -> None:
    with (
        appsdk.LLMDClient(base_url=vllm.url + "/openai", max_retries=0) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.chat(model=TEST_MODEL, messages=MESSAGES)
    assert not isinstance(caught.value, ModelNotFoundError)
    assert "base_url" in str(caught.value) and "/openai/v1/chat/completions" in str(caught.value)


def test_the_usage_chunk_asked_for_by_the_client_is_recorded_not_yielded(
    vllm: OpenAIServer,
) -> None:
    with capture_spans() as captured, appsdk.LLMDClient(base_url=vllm.base_url) as client:
        with client.chat(model=TEST_MODEL, messages=MESSAGES, stream=True) as stream:
            chunks = list(stream)
        assert vllm.last().body["stream_options"] == {"include_usage": True}
        asked = list(
            client.chat(
                model=TEST_MODEL,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(chunk.choices for chunk in chunks)
    assert stream.usage is not None and stream.usage.completion_tokens == 6
    assert asked[-1].choices == [] and asked[-1].usage is not None
    generations = [o for o in captured.observations() if o.type == "generation"]
    assert [g.usage for g in generations] == [{"input": 7, "output": 6, "total": 13}] * 2


def test_models_retrieve_reads_the_list_where_the_gateway_has_no_route(vllm: OpenAIServer) -> None:
    with appsdk.LLMDClient(base_url=vllm.base_url) as client:
        model = client.models.retrieve("test-llama-lora")
        assert [m.id for m in client.models.list()][:2] == [TEST_MODEL, "test-llama-lora"]
        with pytest.raises(ModelNotFoundError, match="does not serve"):
            client.models.retrieve("no-such-model")
    assert model.id == "test-llama-lora" and model.owned_by == "vllm"
    assert model.to_dict()["max_model_len"] == 4096


# -- tools on the generation ------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("stream", [False, True])
def test_generations_record_tool_definitions_and_tool_calls(
    vllm: OpenAIServer, stream: bool
) -> None:
    with capture_spans() as captured, appsdk.LLMDClient(base_url=vllm.base_url) as client:
        if stream:
            with client.chat(
                model=TEST_MODEL, messages=MESSAGES, tools=[WEATHER], stream=True
            ) as answer:
                chunks = list(answer)
            calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or [] if tc.id]
            call_id = calls[0].id
        else:
            message = client.chat(model=TEST_MODEL, messages=MESSAGES, tools=[WEATHER])
            tool_calls = message.choices[0].message.tool_calls
            assert tool_calls is not None
            call_id = tool_calls[0].id
    (generation,) = (o for o in captured.observations() if o.type == "generation")
    assert generation.input == {"messages": MESSAGES, "tools": [WEATHER]}
    assert json.loads(generation.attributes["gen_ai.tool.definitions"]) == [WEATHER]
    assert json.loads(generation.attributes["gen_ai.input.messages"]) == MESSAGES
    arguments = json.dumps({"city": "Paris", "unit": "celsius", "call": 0})
    assert generation.output == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        }
    ]
    assert generation.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    if stream:
        assert "langfuse.observation.completion_start_time" in generation.attributes


def test_tool_definitions_follow_the_policy(vllm: OpenAIServer) -> None:
    quiet = appsdk.Policy(messages="none", completions="metadata")
    with (
        capture_spans() as captured,
        appsdk.LLMDClient(base_url=vllm.base_url, policy=quiet) as client,
    ):
        client.chat(model=TEST_MODEL, messages=MESSAGES, tools=[WEATHER])
    (generation,) = (o for o in captured.observations() if o.type == "generation")
    assert "gen_ai.tool.definitions" not in generation.attributes
    assert generation.input is None
    assert "get_weather" not in json.dumps(generation.output)


# -- bounded and honest answers ---------------------------------------------------------------


def _one_connection(vllm: OpenAIServer, **options: Any) -> appsdk.LLMDClient:
    return appsdk.LLMDClient(
        base_url=vllm.base_url,
        limits=httpx.Limits(max_connections=1),
        timeout=options.pop("timeout", httpx.Timeout(10, pool=2)),
        max_retries=0,
        **options,
    )


def test_a_gzip_bomb_is_stopped_at_the_decoded_limit(vllm: OpenAIServer) -> None:
    bomb = {"x-test-gzip-bomb": str(20_000_000)}
    with capture_spans() as captured, _one_connection(vllm, max_response_bytes=1_000_000) as c:
        with pytest.raises(ResponseTooLargeError, match="decoded") as caught:
            c.chat(model=TEST_MODEL, messages=MESSAGES, extra_headers=bomb)
        # with one connection in the pool, a leak would time this call out
        assert c.chat(model=TEST_MODEL, messages=MESSAGES).choices
    size = int(str(caught.value).split("(")[1].split(" ")[0])
    assert 1_000_000 < size <= 1_000_000 + 64 * 1024
    levels = [o.level for o in captured.observations() if o.type == "generation"]
    assert levels == ["ERROR", "DEFAULT"]


def test_one_endless_sse_line_is_stopped_at_the_limit(vllm: OpenAIServer) -> None:
    endless = {"x-test-long-line": str(8_000_000)}
    with _one_connection(vllm, max_response_bytes=1_000_000) as client:
        stream = client.chat(
            model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers=endless
        )
        with pytest.raises(ResponseTooLargeError, match="stream is larger"):
            list(stream)
        assert client.chat(model=TEST_MODEL, messages=MESSAGES).choices


def test_a_stream_that_ends_without_done_is_an_error_with_the_partial_output(
    vllm: OpenAIServer,
) -> None:
    cut = {"x-test-no-done": "1"}
    with capture_spans() as captured, appsdk.LLMDClient(base_url=vllm.base_url) as client:
        received = []
        with pytest.raises(StreamError, match=r"without \[DONE\]"):
            for chunk in client.chat(
                model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers=cut
            ):
                received.append(chunk.choices[0].delta.content or "")
    (generation,) = (o for o in captured.observations() if o.type == "generation")
    assert generation.level == "ERROR" and generation.attributes["error.type"] == "StreamError"
    assert generation.output == [{"role": "assistant", "content": "".join(received)}]
    assert "".join(received) == "You said: What does llm-d do?"


def test_keep_alive_comments_do_not_keep_a_stream_open(vllm: OpenAIServer) -> None:
    # The server sends a comment every 50 ms for up to 10 s: bytes keep arriving, so only the
    # client's rule (the read timeout counts between data events) ends it.
    alive = {"x-test-keepalive": "200"}
    timeout = httpx.Timeout(10, read=0.3, pool=2)
    with capture_spans() as captured, _one_connection(vllm, timeout=timeout) as client:
        stream = client.chat(model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers=alive)
        with pytest.raises(LLMDTimeoutError, match="keep-alives only"):
            list(stream)
        assert client.chat(model=TEST_MODEL, messages=MESSAGES).choices
    failed = next(o for o in captured.observations() if o.type == "generation")
    assert failed.attributes["error.type"] == "LLMDTimeoutError"
    assert failed.output == [{"role": "assistant", "content": "hi"}]


def test_a_stream_has_a_total_deadline(vllm: OpenAIServer) -> None:
    slow = {"x-test-slow-data": "200"}
    with _one_connection(vllm, stream_deadline_s=0.3) as client:
        stream = client.chat(model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers=slow)
        with pytest.raises(LLMDTimeoutError, match="deadline"):
            list(stream)
        assert client.chat(model=TEST_MODEL, messages=MESSAGES).choices


def test_a_json_error_answer_to_a_stream_is_the_typed_error_with_the_message(
    vllm: OpenAIServer,
) -> None:
    json_error = {"x-test-json-error-on-stream": "1"}
    with (
        capture_spans() as captured,
        appsdk.LLMDClient(base_url=vllm.base_url) as client,
        pytest.raises(BadRequestError, match="the prompt is too long") as caught,
    ):
        client.chat(model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers=json_error)
    assert caught.value.code == "400" and caught.value.type == "BadRequestError"
    (generation,) = (o for o in captured.observations() if o.type == "generation")
    assert generation.attributes["error.type"] == "BadRequestError"


def test_a_redirect_is_an_error_that_says_so(vllm: OpenAIServer) -> None:
    with (
        appsdk.LLMDClient(base_url=vllm.base_url, max_retries=0) as client,
        pytest.raises(APIStatusError, match="redirected") as caught,
    ):
        client.chat(model=TEST_MODEL, messages=MESSAGES, extra_headers={"x-test-redirect": "1"})
    assert caught.value.status_code == 302
    assert "elsewhere.invalid" in str(caught.value)


async def test_async_streams_are_bounded_the_same_way(vllm: OpenAIServer) -> None:
    async with appsdk.AsyncLLMDClient(
        base_url=vllm.base_url, max_response_bytes=1_000_000, stream_deadline_s=5
    ) as client:
        endless = await client.chat(
            model=TEST_MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-test-long-line": str(8_000_000)},
        )
        with pytest.raises(ResponseTooLargeError):
            [chunk async for chunk in endless]
        cut = await client.chat(
            model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers={"x-test-no-done": "1"}
        )
        with pytest.raises(StreamError, match=r"without \[DONE\]"):
            [chunk async for chunk in cut]
        alive = await client.chat(
            model=TEST_MODEL,
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-test-keepalive": "200"},
            timeout=httpx.Timeout(10, read=0.3),
        )
        with pytest.raises(LLMDTimeoutError):
            [chunk async for chunk in alive]
        with pytest.raises(ResponseTooLargeError):
            await client.chat(
                model=TEST_MODEL, messages=MESSAGES, extra_headers={"x-test-gzip-bomb": "9000000"}
            )


@pytest.mark.parametrize("encoding", ["x-test-crlf", "x-test-gzip-stream"])
def test_streams_with_crlf_line_ends_or_gzip_read_the_same(
    vllm: OpenAIServer, encoding: str
) -> None:
    with appsdk.LLMDClient(base_url=vllm.base_url) as client:
        plain = [c.to_dict() for c in client.chat(model=TEST_MODEL, messages=MESSAGES, stream=True)]
        encoded = client.chat(
            model=TEST_MODEL, messages=MESSAGES, stream=True, extra_headers={encoding: "1"}
        )
        assert [c.to_dict() for c in encoded] == plain
        assert encoded.usage is not None and encoded.usage.total_tokens == 13


def test_a_raw_stream_gives_headers_first_and_the_chunks_from_parse(vllm: OpenAIServer) -> None:
    with appsdk.LLMDClient(base_url=vllm.base_url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=TEST_MODEL, messages=MESSAGES, stream=True, request_id="raw-1"
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.request_id == "raw-1"
        with raw.parse() as stream:
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "You said: What does llm-d do?"
