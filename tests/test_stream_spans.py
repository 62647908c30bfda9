"""The HTTP client span of a streamed answer covers the stream, as the trace tree shows it.

``POST [client]`` is the parent of the gateway's ``gateway.request`` and vLLM's
``llm_request``: it must not end when the headers arrive but when the stream does (read to
the end, closed, left with ``with``, dropped after a ``break``, or broken off, then as an
error), and the generation ends after it. Sync and async, typed calls, raw responses and
plain ``client.stream``. Times are the spans' own (``time.time_ns``, the clock the test reads
too); nothing here waits for time to pass.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import appsdk
import appsdk.openai
from appsdk import sim
from appsdk.llmd import StreamError
from appsdk.testing import SpanCapture, capture_spans

MODEL = "sim-llama-3-8b"
MESSAGES = [{"role": "user", "content": "What does llm-d do?"}]
# The simulator paces its tokens: the stream outlasts its headers by ~12 x 2 ms, so a client
# span that ended with the headers would end before the server spans do.
PACED = {"x-sim-itl-ms": "2"}
HTTP_SCOPE = "opentelemetry.instrumentation.httpx"
_CANCELLED = "langfuse.observation.metadata.cancelled"


@dataclass
class Env:
    sim: sim.Simulator
    downstream: InMemorySpanExporter
    captured: SpanCapture

    def one(self, name: str) -> ReadableSpan:
        (span,) = (s for s in self.captured.spans if s.name == name)
        return span

    def http(self) -> ReadableSpan:
        """The one HTTP client span of the test's one call."""
        (span,) = (s for s in self.captured.spans if s.kind is SpanKind.CLIENT and _is_http(s))
        return span

    def generation(self) -> ReadableSpan:
        (span,) = (s for s in self.captured.spans if s.name.startswith(("chat ", "text_")))
        return span

    def server_spans(self) -> list[ReadableSpan]:
        spans = [
            s
            for s in self.downstream.get_finished_spans()
            if s.name in ("gateway.request", "llm_request")
        ]
        assert len(spans) == 2, [s.name for s in spans]
        return spans

    def traceparent_parent(self) -> int:
        """The span id the request named as the parent of the gateway's span."""
        return int(self.sim.received[-1].headers["traceparent"].split("-")[2], 16)


def _is_http(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name == HTTP_SCOPE


@pytest.fixture
def env() -> Iterator[Env]:
    downstream = InMemorySpanExporter()
    with sim.running(exporter=downstream) as simulator, capture_spans() as captured:
        yield Env(simulator, downstream, captured)


def _end(span: ReadableSpan) -> int:
    assert span.end_time is not None, f"{span.name} never ended"
    return span.end_time


def _assert_tree(env: Env) -> tuple[ReadableSpan, ReadableSpan]:
    """generation -> POST -> gateway.request -> llm_request, one trace; (generation, http)."""
    generation, http = env.generation(), env.http()
    assert http.parent is not None and http.parent.span_id == generation.context.span_id
    assert env.traceparent_parent() == http.context.span_id
    assert _end(generation) >= _end(http), "the generation ends after its HTTP child"
    return generation, http


def _assert_covers_the_servers(env: Env, http: ReadableSpan) -> None:
    spans = {s.name: s for s in env.server_spans()}
    gateway, vllm = spans["gateway.request"], spans["llm_request"]
    assert gateway.parent is not None and gateway.parent.span_id == http.context.span_id
    assert vllm.parent is not None and vllm.parent.span_id == gateway.context.span_id
    assert _end(http) >= _end(gateway) and _end(http) >= _end(vllm)


def _assert_failed(http: ReadableSpan, error_type: str) -> None:
    assert http.status.status_code is StatusCode.ERROR
    assert (http.attributes or {})["error.type"] == error_type
    assert [e.name for e in http.events] == ["exception"]


# -- read to the end ------------------------------------------------------------------------


def test_a_streamed_chat_read_to_the_end_keeps_its_client_span_open_until_the_end(
    env: Env,
) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED
        )
        for _ in stream:
            last_chunk = time.time_ns()
        done = time.time_ns()
    generation, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert last_chunk <= _end(http) <= done
    assert http.status.status_code is StatusCode.UNSET
    assert (http.attributes or {})["http.status_code"] == 200  # the instrumentation's attributes
    assert generation.status.status_code is StatusCode.UNSET


def test_a_streamed_completion_read_to_the_end_is_covered_too(env: Env) -> None:
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url) as client,
        client.completions.create(
            model=MODEL, prompt="Say hi", stream=True, extra_headers=PACED
        ) as stream,
    ):
        for _ in stream:
            last_chunk = time.time_ns()
    _, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert _end(http) >= last_chunk


async def test_an_async_stream_read_to_the_end_is_covered(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED
        )
        async for _ in stream:
            last_chunk = time.time_ns()
        done = time.time_ns()
    _, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert last_chunk <= _end(http) <= done


def test_a_raw_streamed_response_is_covered(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        for _ in raw.parse():
            last_chunk = time.time_ns()
    _, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert _end(http) >= last_chunk


async def test_an_async_raw_streamed_response_is_covered(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED
        )
        async for _ in raw.parse():
            last_chunk = time.time_ns()
    _, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert _end(http) >= last_chunk


def _sse_body() -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "stream": True}


def test_a_plain_httpx_stream_on_the_client_is_covered(env: Env) -> None:
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url) as client,
        client.stream("POST", "/v1/chat/completions", json=_sse_body(), headers=PACED) as response,
    ):
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            last_chunk = time.time_ns()
        ended = time.time_ns()
    assert [line for line in lines if line][-1] == "data: [DONE]"
    http = env.http()
    assert env.traceparent_parent() == http.context.span_id
    _assert_covers_the_servers(env, http)
    assert last_chunk <= _end(http) <= ended


# -- closed early -----------------------------------------------------------------------------


def test_closing_a_stream_ends_its_client_span_then_its_generation(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED)
        next(stream), next(stream)
        received = time.time_ns()
        stream.close()
        closed = time.time_ns()
    generation, http = _assert_tree(env)
    assert received <= _end(http) <= closed
    assert json.loads(str((generation.attributes or {})[_CANCELLED])) is True


def test_leaving_the_with_block_ends_the_client_span(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        with client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED) as s:
            next(s)
            received = time.time_ns()
        left = time.time_ns()
    _, http = _assert_tree(env)
    assert received <= _end(http) <= left


def test_breaking_out_of_a_stream_ends_the_client_span_when_the_stream_is_dropped(
    env: Env,
) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        for _ in client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED):
            received = time.time_ns()
            break
        gc.collect()  # the stream is dropped with the loop (collected at once on CPython)
        dropped = time.time_ns()
    _, http = _assert_tree(env)
    assert received <= _end(http) <= dropped


async def test_an_async_stream_closed_early_ends_the_client_span(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED)
        async for _ in stream:
            received = time.time_ns()
            break
        await stream.close()
        closed = time.time_ns()
    _, http = _assert_tree(env)
    assert received <= _end(http) <= closed


async def test_leaving_an_async_with_block_ends_the_client_span(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.completions.create(
            model=MODEL, prompt="Say hi", stream=True, extra_headers=PACED
        )
        async with stream:
            await anext(stream)
            received = time.time_ns()
        left = time.time_ns()
    _, http = _assert_tree(env)
    assert received <= _end(http) <= left


async def test_an_async_stream_dropped_after_a_break_ends_the_client_span(env: Env) -> None:
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED)
        async for _ in stream:
            received = time.time_ns()
            break
        del stream
        gc.collect()
        dropped = time.time_ns()
    _, http = _assert_tree(env)
    assert received <= _end(http) <= dropped


def test_a_plain_httpx_stream_left_early_ends_the_client_span(env: Env) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=_sse_body(), headers=PACED
        ) as response:
            next(response.iter_lines())
            received = time.time_ns()
        left = time.time_ns()
    assert received <= _end(env.http()) <= left


# -- broken off -------------------------------------------------------------------------------


def test_a_connection_dropped_mid_stream_fails_the_client_span(env: Env) -> None:
    reset = {**PACED, "x-sim-reset-after": "3"}
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=reset)
        with pytest.raises(StreamError, match="broke off"):
            for _ in stream:
                last_chunk = time.time_ns()
        raised = time.time_ns()
    generation, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert last_chunk <= _end(http) <= raised
    _assert_failed(http, "RemoteProtocolError")
    assert generation.status.status_code is StatusCode.ERROR


async def test_an_async_connection_dropped_mid_stream_fails_the_client_span(env: Env) -> None:
    reset = {**PACED, "x-sim-reset-after": "3"}
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=reset)
        with pytest.raises(StreamError, match="broke off"):
            async with stream:
                async for _ in stream:
                    last_chunk = time.time_ns()
        raised = time.time_ns()
    _, http = _assert_tree(env)
    _assert_covers_the_servers(env, http)
    assert last_chunk <= _end(http) <= raised
    _assert_failed(http, "RemoteProtocolError")


def test_an_error_event_mid_stream_fails_the_client_span(env: Env) -> None:
    failing = {**PACED, "x-sim-stream-error-after": "3"}
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        stream = client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=failing)
        with pytest.raises(StreamError, match="mid-stream"):
            for _ in stream:
                last_chunk = time.time_ns()
        raised = time.time_ns()
    _, http = _assert_tree(env)
    assert last_chunk <= _end(http) <= raised
    _assert_failed(http, "StreamError")


async def test_an_async_error_event_mid_stream_fails_the_client_span(env: Env) -> None:
    failing = {**PACED, "x-sim-stream-error-after": "3"}
    async with appsdk.AsyncLLMDClient(base_url=env.sim.base_url) as client:
        stream = await client.chat(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=failing
        )
        with pytest.raises(StreamError, match="mid-stream"):
            async for _ in stream:
                last_chunk = time.time_ns()
        raised = time.time_ns()
    _, http = _assert_tree(env)
    assert last_chunk <= _end(http) <= raised
    _assert_failed(http, "StreamError")


# -- unchanged: answers that are not streamed -------------------------------------------------


def test_a_call_that_is_not_streamed_keeps_one_client_span_under_its_generation(
    env: Env,
) -> None:
    with appsdk.LLMDClient(base_url=env.sim.base_url) as client:
        assert client.chat(model=MODEL, messages=MESSAGES, extra_headers=PACED).text
    _, http = _assert_tree(env)
    assert http.status.status_code is StatusCode.UNSET
    assert http.name == "POST" and http.kind is SpanKind.CLIENT


class _TimedBody(httpx.SyncByteStream):
    """A body that notes when the client starts reading it."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read_at: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        self.read_at = time.time_ns()
        yield self.content


def test_the_client_span_of_an_answer_that_is_not_streamed_ends_with_its_headers() -> None:
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
    }
    body = _TimedBody(json.dumps(answer).encode())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=body)

    with (
        capture_spans() as captured,
        appsdk.LLMDClient(
            base_url="http://llm-d.test", transport=httpx.MockTransport(handler)
        ) as c,
    ):
        assert c.chat(model="m", messages=MESSAGES).text == "hi"
    (http,) = (s for s in captured.spans if _is_http(s))
    (generation,) = (s for s in captured.spans if s.name == "chat m")
    assert body.read_at is not None and _end(http) <= body.read_at <= _end(generation)


def test_a_json_error_answer_to_a_stream_request_is_one_failed_exchange(env: Env) -> None:
    error = {"x-sim-status": "400"}
    with (
        appsdk.LLMDClient(base_url=env.sim.base_url, max_retries=0) as client,
        pytest.raises(appsdk.llmd.BadRequestError),
    ):
        client.chat(model=MODEL, messages=MESSAGES, stream=True, extra_headers=error)
    generation, http = _assert_tree(env)
    assert (http.attributes or {})["http.status_code"] == 400
    assert generation.status.status_code is StatusCode.ERROR


def test_a_stream_answered_from_memory_still_ends_its_client_span() -> None:
    body = b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
    body += b'"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with (
        capture_spans() as captured,
        appsdk.LLMDClient(base_url="http://llm-d.test", transport=httpx.MockTransport(answer)) as c,
    ):
        assert [chunk.text for chunk in c.chat(model="m", messages=MESSAGES, stream=True)] == ["hi"]
    (http,) = (s for s in captured.spans if _is_http(s))
    (generation,) = (s for s in captured.spans if s.name == "chat m")
    assert _end(generation) >= _end(http)


# -- the openai SDK, traced by appsdk.openai --------------------------------------------------


def test_the_openai_path_makes_no_client_span_and_its_generation_covers_the_stream(
    env: Env,
) -> None:
    # appsdk.openai sends the generation itself as the gateway's parent (traceparent), so the
    # span the gateway's hangs under is the generation, which ends when the stream does.
    client = appsdk.openai.OpenAI(base_url=env.sim.base_url + "/v1", api_key="k", max_retries=0)
    with (
        client,
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_headers=PACED
        ) as stream,
    ):
        for _ in stream:
            last_chunk = time.time_ns()
    assert not [s for s in env.captured.spans if _is_http(s)]
    generation = env.generation()
    assert env.traceparent_parent() == generation.context.span_id
    assert _end(generation) >= last_chunk
