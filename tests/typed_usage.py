"""How the llm-d client reads to a type checker: ``mypy --strict tests/typed_usage.py`` (CI).

Nothing here runs; every line is what a user writes, and ``assert_type`` pins what the
checker must infer. A change that makes a call ``Any`` or loses an overload fails CI.
"""

from __future__ import annotations

import json
from typing import assert_type

import httpx

import appsdk
from appsdk.llmd import (
    APIStatusError,
    AsyncStream,
    NotFoundError,
    RateLimitError,
    RawResponse,
    Stream,
)
from appsdk.llmd.models import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageToolCall,
    Completion,
    CompletionChunk,
    CompletionUsage,
    CreateEmbeddingResponse,
    Model,
    ModelList,
)

MODEL = "llama-3-8b"
MESSAGES = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def openai_constructor() -> appsdk.LLMDClient:
    return appsdk.LLMDClient(
        base_url="http://gateway/v1",
        api_key="sk-test",
        timeout=20.0,
        max_retries=2,
        default_headers={"x-team": "search"},
        default_query={"deployment": "a"},
    )


def chat(client: appsdk.LLMDClient) -> str:
    completion = client.chat(model=MODEL, messages=MESSAGES, temperature=0.2)
    assert_type(completion, ChatCompletion)
    created = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=False)
    assert_type(created, ChatCompletion)
    direct = client.complete_chat(model=MODEL, messages=MESSAGES, fairness_id="team-a")
    assert_type(direct, ChatCompletion)
    assert_type(completion.usage, CompletionUsage | None)
    return completion.choices[0].message.content or ""


def stream(client: appsdk.LLMDClient) -> str:
    parts: list[str] = []
    with client.complete_chat(model=MODEL, messages=MESSAGES, stream=True) as s:
        assert_type(s, Stream[ChatCompletionChunk])
        for chunk in s:
            parts.append(chunk.choices[0].delta.content or "")
    same = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert_type(same, Stream[ChatCompletionChunk])
    also = client.chat(model=MODEL, messages=MESSAGES, stream=True)
    assert_type(also, Stream[ChatCompletionChunk])
    return "".join(parts) + also.text


def either(client: appsdk.LLMDClient, streaming: bool) -> None:
    answer = client.chat(model=MODEL, messages=MESSAGES, stream=streaming)
    assert_type(answer, ChatCompletion | Stream[ChatCompletionChunk])


def tools(client: appsdk.LLMDClient) -> list[object]:
    message = client.chat(model=MODEL, messages=MESSAGES, tools=TOOLS).choices[0].message
    calls = message.tool_calls or []
    for call in calls:
        assert_type(call, ChatCompletionMessageToolCall)
    arguments: list[object] = [json.loads(call.function.arguments) for call in calls]
    with client.chat(model=MODEL, messages=[*MESSAGES, message], tools=TOOLS, stream=True) as s:
        for chunk in s:
            for piece in chunk.choices[0].delta.tool_calls or []:
                arguments.append((piece.index, piece.id, piece.function and piece.function.name))
    return arguments


def text_and_embeddings(client: appsdk.LLMDClient) -> list[float]:
    completion = client.completions.create(model=MODEL, prompt="Once", max_tokens=5)
    assert_type(completion, Completion)
    for chunk in client.complete(model=MODEL, prompt="Once", stream=True):
        assert_type(chunk, CompletionChunk)
    vectors = client.embeddings.create(model=MODEL, input=["a", "b"])
    assert_type(vectors, CreateEmbeddingResponse)
    return vectors.data[0].embedding


def models(client: appsdk.LLMDClient) -> list[str]:
    listed = client.models.list()
    assert_type(listed, ModelList)
    assert_type(client.models.retrieve(MODEL), Model)
    return [model.id for model in listed]


def raw_and_options(client: appsdk.LLMDClient) -> str | None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert_type(raw, RawResponse[ChatCompletion])
    assert_type(raw.headers, httpx.Headers)
    quick = client.with_options(timeout=5.0, max_retries=0)
    assert_type(quick, appsdk.LLMDClient)
    return raw.parse().choices[0].message.content


def errors(client: appsdk.LLMDClient) -> int | None:
    try:
        client.chat(model=MODEL, messages=MESSAGES)
    except RateLimitError as error:
        assert_type(error.status_code, int)
        return int(error.retry_after or 0)
    except NotFoundError as error:
        return error.status_code
    except APIStatusError as error:
        print(error.code, error.type, error.param, error.body, error.request_id)
        assert_type(error.response, httpx.Response | None)
    return None


async def asynchronous(client: appsdk.AsyncLLMDClient) -> str:
    completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert_type(completion, ChatCompletion)
    s = await client.chat(model=MODEL, messages=MESSAGES, stream=True)
    assert_type(s, AsyncStream[ChatCompletionChunk])
    parts: list[str] = []
    async with s:
        async for chunk in s:
            parts.append(chunk.choices[0].delta.content or "")
    ids = [model.id async for model in client.models.list()]
    page = await client.models.list()
    assert_type(page, ModelList)
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert_type(raw.parse(), ChatCompletion)
    return "".join(parts) + ",".join(ids)
