"""The openai-compatibility suite: the same user snippets, through ``openai`` and through
appsdk's client, on one loopback server shaped like vLLM, must see the same things.

Each snippet is what an openai user writes; it gets an :class:`Api` (a client factory and the
module the error classes come from, ``openai`` or ``appsdk.llmd``) and returns what the user
would look at. appsdk's side runs with tracing on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from opentelemetry import baggage
from opentelemetry import context as context_api

import appsdk
import appsdk.llmd
import appsdk.openai
from appsdk.testing import CapturedObservation, SpanCapture, capture_spans
from tests.openai_server import EMBED_MODEL, MODEL, OpenAIServer, openai_server
from tests.servers import bound_socket, url_of

MESSAGES = [{"role": "user", "content": "What does llm-d do?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


@dataclass
class Api:
    """What a snippet sees: how to make a client, where the errors live, the server."""

    make: Callable[..., Any]
    errors: Any
    server: OpenAIServer


def _openai(server: OpenAIServer, asynchronous: bool) -> Api:
    kind = openai.AsyncOpenAI if asynchronous else openai.OpenAI

    def make(**options: Any) -> Any:
        options = {"base_url": server.base_url, "api_key": "sk-test", "max_retries": 0, **options}
        return kind(**options)

    return Api(make, openai, server)


def _traced_openai(server: OpenAIServer, asynchronous: bool) -> Api:
    kind = appsdk.openai.AsyncOpenAI if asynchronous else appsdk.openai.OpenAI

    def make(**options: Any) -> Any:
        options = {"base_url": server.base_url, "api_key": "sk-test", "max_retries": 0, **options}
        return kind(**options)

    return Api(make, openai, server)


def _appsdk(server: OpenAIServer, asynchronous: bool) -> Api:
    kind = appsdk.AsyncLLMDClient if asynchronous else appsdk.LLMDClient

    def make(**options: Any) -> Any:
        options = {"base_url": server.base_url, "api_key": "sk-test", "max_retries": 0, **options}
        return kind(**options)

    return Api(make, appsdk.llmd, server)


SYNC: dict[str, Callable[[Api], Any]] = {}
ASYNC: dict[str, Callable[[Api], Awaitable[Any]]] = {}


def snippet(function: Callable[[Api], Any]) -> Callable[[Api], Any]:
    SYNC[function.__name__] = function
    return function


def async_snippet(function: Callable[[Api], Awaitable[Any]]) -> Callable[[Api], Awaitable[Any]]:
    ASYNC[function.__name__] = function
    return function


_STATUS_CLASSES = [
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
]


def error_view(api: Api, error: Any) -> dict[str, Any]:
    """What a user reads off an API error."""
    return {
        "is_api_error": isinstance(error, api.errors.APIError),
        "is_status_error": isinstance(error, api.errors.APIStatusError),
        "classes": [n for n in _STATUS_CLASSES if isinstance(error, getattr(api.errors, n))],
        "status_code": error.status_code,
        "code": error.code,
        "type": error.type,
        "param": error.param,
        "body": error.body,
        "request_id_from_response": error.request_id == error.response.headers["x-request-id"],
        "response_status": error.response.status_code,
        "response_json": error.response.json(),
    }


# -- chat ------------------------------------------------------------------------------------


@snippet
def chat_content(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return completion.choices[0].message.content


@snippet
def chat_to_dict_and_json(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return [
            completion.to_dict(),
            json.loads(completion.to_json()),
            completion.model_dump(exclude_unset=True),
            json.loads(completion.model_dump_json(exclude_unset=True)),
        ]


@snippet
def chat_fields(api: Api) -> Any:
    with api.make() as client:
        c = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.2)
        choice = c.choices[0]
        usage = c.usage
        message = choice.message
        answer = [c.id, c.object, c.created, c.model, choice.index, choice.finish_reason]
        counts = [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens]
        return [*answer, message.role, message.tool_calls, choice.logprobs, *counts]


@snippet
def chat_history(api: Api) -> Any:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Tell me about KV caches"},
    ]
    with api.make() as client:
        return client.chat.completions.create(model=MODEL, messages=messages).to_dict()


@snippet
def chat_max_tokens_and_stop(api: Api) -> Any:
    with api.make() as client:
        short = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        stopped = client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["llm-d"])
        return [
            (c.choices[0].message.content, c.choices[0].finish_reason) for c in (short, stopped)
        ]


@snippet
def chat_n_choices(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=3)
        return [(c.index, c.message.content) for c in completion.choices]


@snippet
def chat_logprobs(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, logprobs=True, top_logprobs=2
        )
        return [
            (t.token, t.logprob, t.bytes, [(x.token, x.logprob) for x in t.top_logprobs])
            for t in completion.choices[0].logprobs.content
        ]


@snippet
def chat_seed_and_fingerprint(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=7)
        return completion.system_fingerprint


@snippet
def chat_refusal(api: Api) -> Any:
    messages = [{"role": "user", "content": "Do something forbidden"}]
    with api.make() as client:
        message = client.chat.completions.create(model=MODEL, messages=messages).choices[0].message
        return [message.refusal, message.content]


@snippet
def chat_tool_call(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER])
        choice = completion.choices[0]
        call = choice.message.tool_calls[0]
        arguments = json.loads(call.function.arguments)
        return [choice.finish_reason, call.id, call.type, call.function.name, arguments]


@snippet
def chat_parallel_tool_calls(api: Api) -> Any:
    with api.make() as client:
        message = (
            client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER, TIME])
            .choices[0]
            .message
        )
        return [call.to_dict() for call in message.tool_calls]


@snippet
def chat_tool_round_trip(api: Api) -> Any:
    with api.make() as client:
        messages: list[Any] = list(MESSAGES)
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
        message = first.choices[0].message
        messages.append(message)  # the message object itself, as openai's docs do
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
        second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
        sent = api.server.last().body["messages"]
        return [second.choices[0].message.content, sent[1]["tool_calls"], sent[2]]


@snippet
def chat_tool_choice_none_and_json_mode(api: Api) -> Any:
    with api.make() as client:
        none = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WEATHER], tool_choice="none"
        )
        json_mode = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, response_format={"type": "json_object"}
        )
        return [none.choices[0].message.tool_calls, json_mode.choices[0].message.content]


@snippet
def chat_extra_body_headers_query(api: Api) -> Any:
    with api.make() as client:
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            extra_body={"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}},
            extra_headers={"x-team": "search"},
            extra_query={"api-version": "2024-10-01"},
            timeout=30,
        )
        seen = api.server.last()
        extras = [seen.body["top_k"], seen.body["chat_template_kwargs"]]
        return [*extras, seen.headers["x-team"], seen.query]


@snippet
def client_defaults(api: Api) -> Any:
    with api.make(default_headers={"x-tenant": "acme"}, default_query={"deployment": "a"}) as c:
        c.chat.completions.create(model=MODEL, messages=MESSAGES)
        seen = api.server.last()
        return [seen.headers["x-tenant"], seen.query, seen.headers["authorization"], c.api_key]


@snippet
def with_options_copy(api: Api) -> Any:
    with api.make() as client:
        quick = client.with_options(timeout=20.0, max_retries=1)
        completion = quick.chat.completions.create(model=MODEL, messages=MESSAGES)
        return [completion.choices[0].message.content, quick.max_retries, client.max_retries]


@snippet
def with_raw_response(api: Api) -> Any:
    with api.make() as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        completion = raw.parse()
        return [
            raw.status_code,
            raw.headers["content-type"],
            "x-request-id" in raw.headers,
            completion.choices[0].message.content,
        ]


@snippet
def chat_message_helpers(api: Api) -> Any:
    with api.make() as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        message = completion.choices[0].message
        usage = completion.usage
        return [
            message.model_dump(exclude_none=True),
            usage.model_dump(exclude_none=True),
            usage.prompt_tokens_details,
            usage.completion_tokens_details,
            message.role == "assistant",
        ]


@snippet
def chat_inputs_in_other_shapes(api: Api) -> Any:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Describe KV caches"}]}]
    with api.make() as client:
        from_generator = client.chat.completions.create(
            model=MODEL, messages=(m for m in MESSAGES), stop="llm-d", user="u-1"
        )
        from_parts = client.chat.completions.create(model=MODEL, messages=parts)
        return [
            from_generator.choices[0].message.content,
            api.server.last().body["messages"],
            from_parts.choices[0].message.content,
        ]


@snippet
def chat_lora_adapter_and_listing(api: Api) -> Any:
    with api.make() as client:
        adapters = [m.id for m in client.models.list().data if m.id.endswith("lora")]
        completion = client.chat.completions.create(model=adapters[0], messages=MESSAGES)
        return [adapters, completion.model]


@snippet
def error_timeout(api: Api) -> Any:
    with api.make(timeout=0.2) as client:
        try:
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, extra_headers={"x-test-delay": "2"}
            )
        except api.errors.APITimeoutError as error:
            return [isinstance(error, api.errors.APIConnectionError), "timed out" in str(error)]
        return "no error"


# -- chat streams ----------------------------------------------------------------------------


@snippet
def stream_canonical_loop(api: Api) -> Any:
    with api.make() as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        parts = []
        for chunk in stream:
            parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)


@snippet
def stream_chunks(api: Api) -> Any:
    with api.make() as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return [chunk.to_dict() for chunk in stream]


@snippet
def stream_usage_when_asked(api: Api) -> Any:
    with api.make() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        return [len(chunks), chunks[-1].choices, chunks[-1].usage.to_dict(), chunks[-2].usage]


@snippet
def stream_tool_call_deltas(api: Api) -> Any:
    with api.make() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WEATHER, TIME], stream=True
        )
        calls: dict[int, dict[str, Any]] = {}
        finish = None
        for chunk in stream:
            delta = chunk.choices[0].delta
            for piece in delta.tool_calls or []:
                entry = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
                if piece.id:
                    entry["id"] = piece.id
                if piece.function and piece.function.name:
                    entry["name"] += piece.function.name
                if piece.function and piece.function.arguments:
                    entry["arguments"] += piece.function.arguments
            finish = chunk.choices[0].finish_reason or finish
        return [finish, calls]


@snippet
def stream_n_choices_and_logprobs(api: Api) -> Any:
    with api.make() as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, n=2, logprobs=True, top_logprobs=1
        )
        texts: dict[int, str] = {}
        tokens = []
        for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.logprobs and choice.logprobs.content:
                    tokens += [t.token for t in choice.logprobs.content]
        return [texts, tokens]


@snippet
def stream_context_manager_and_response(api: Api) -> Any:
    with api.make() as client:
        with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as s:
            first = next(iter(s))
            header = s.response.headers["content-type"]
            status = s.response.status_code
        # the connection was given back: the next call works
        after = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return [first.choices[0].delta.role, header, status, after.choices[0].message.content]


@snippet
def stream_refusal(api: Api) -> Any:
    messages = [{"role": "user", "content": "forbidden things"}]
    with api.make() as client:
        stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        return "".join(chunk.choices[0].delta.refusal or "" for chunk in stream)


@snippet
def stream_error_event(api: Api) -> Any:
    with api.make() as client:
        received = []
        try:
            for chunk in client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-test-error-event-after": "3"},
            ):
                received.append(chunk.choices[0].delta.content)
        except api.errors.APIError as error:
            return [received, error.body, error.code, error.type, "failed mid-stream" in str(error)]
        return "no error"


@snippet
def stream_dump_json_and_break(api: Api) -> Any:
    with api.make() as client:
        dumps = []
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True):
            dumps.append(json.loads(chunk.model_dump_json(exclude_unset=True)))
            if len(dumps) == 3:
                break
        after = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1)
        return [dumps, after.choices[0].message.content]


# -- text completions ------------------------------------------------------------------------


@snippet
def completion_text(api: Api) -> Any:
    with api.make() as client:
        completion = client.completions.create(model=MODEL, prompt="Once upon a time")
        return [
            completion.choices[0].text,
            completion.choices[0].finish_reason,
            completion.to_dict(),
        ]


@snippet
def completion_logprobs_echo_n(api: Api) -> Any:
    with api.make() as client:
        completion = client.completions.create(
            model=MODEL, prompt="Say", logprobs=2, echo=True, n=2, max_tokens=3
        )
        logprobs = completion.choices[0].logprobs
        return [
            [c.text for c in completion.choices],
            logprobs.tokens,
            logprobs.token_logprobs,
            logprobs.top_logprobs,
            logprobs.text_offset,
        ]


@snippet
def completion_stream(api: Api) -> Any:
    with api.make() as client:
        stream = client.completions.create(model=MODEL, prompt="Once upon", stream=True)
        chunks = list(stream)
        return ["".join(c.choices[0].text for c in chunks), [c.to_dict() for c in chunks]]


@snippet
def completion_stream_usage_when_asked(api: Api) -> Any:
    with api.make() as client:
        stream = client.completions.create(
            model=MODEL, prompt="x", stream=True, stream_options={"include_usage": True}
        )
        last = list(stream)[-1]
        return [last.choices, last.usage.total_tokens]


@snippet
def completion_batch_prompt_and_tokens(api: Api) -> Any:
    with api.make() as client:
        batch = client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=4)
        vectors = client.embeddings.create(model=EMBED_MODEL, input=[[1, 2, 3]])
        return [batch.to_dict(), vectors.data[0].embedding]


# -- embeddings and models -------------------------------------------------------------------


@snippet
def embeddings(api: Api) -> Any:
    with api.make() as client:
        one = client.embeddings.create(model=EMBED_MODEL, input="hello")
        many = client.embeddings.create(model=EMBED_MODEL, input=["a", "b c"], dimensions=4)
        as_text = client.embeddings.create(model=EMBED_MODEL, input="x", encoding_format="base64")
        return [
            one.data[0].embedding,
            one.usage.prompt_tokens,
            one.model,
            [d.index for d in many.data],
            many.to_dict(),
            as_text.data[0].embedding,
        ]


@snippet
def models_list(api: Api) -> Any:
    with api.make() as client:
        ids = [model.id for model in client.models.list()]
        page = client.models.list()
        return [ids, page.data[0].to_dict(), page.object]


@snippet
def models_retrieve(api: Api) -> Any:
    with api.make() as client:
        model = client.models.retrieve(MODEL)
        try:
            client.models.retrieve("no-such-model")
        except api.errors.NotFoundError as error:
            return [model.id, model.owned_by, model.created, error_view(api, error)]
        return "no error"


# -- errors and retries ----------------------------------------------------------------------


@snippet
def error_model_not_found(api: Api) -> Any:
    with api.make() as client:
        try:
            client.chat.completions.create(model="no-such-model", messages=MESSAGES)
        except api.errors.NotFoundError as error:
            return [error_view(api, error), "does not exist" in str(error)]
        return "no error"


@snippet
def error_bad_parameter(api: Api) -> Any:
    with api.make() as client:
        try:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=5)
        except api.errors.BadRequestError as error:
            return error_view(api, error)
        return "no error"


def _injected(status: int) -> Callable[[Api], Any]:
    def injected(api: Api) -> Any:
        with api.make() as client:
            try:
                client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, extra_headers={"x-test-status": str(status)}
                )
            except api.errors.APIStatusError as error:
                return [error_view(api, error), f"injected failure {status}" in str(error)]
            return "no error"

    injected.__name__ = f"error_status_{status}"
    return injected


for _status in (401, 403, 409, 422, 429, 500, 503):
    snippet(_injected(_status))


@snippet
def error_connection(api: Api) -> Any:
    with bound_socket() as refusing, api.make(base_url=url_of(refusing) + "/v1") as client:
        try:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        except api.errors.APIConnectionError as error:
            return [isinstance(error, api.errors.APITimeoutError), type(error).__mro__ != ()]
        return "no error"


@snippet
def retries_until_success(api: Api) -> Any:
    results = []
    for status in ("503", "429"):
        key = uuid.uuid4().hex
        failing = {
            "x-test-status": status,
            "x-test-fail-key": key,
            "x-test-fail-times": "2",
            "x-test-retry-after": "0.01",
        }
        with api.make(max_retries=2) as client:
            completion = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, extra_headers=failing
            )
        attempts = api.server.failures[key]
        results.append([completion.choices[0].message.content, attempts])
    return results


@snippet
def no_retries_when_told(api: Api) -> Any:
    key = uuid.uuid4().hex
    failing = {"x-test-status": "503", "x-test-fail-key": key, "x-test-fail-times": "5"}
    with api.make(max_retries=0) as client:
        try:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=failing)
        except api.errors.InternalServerError:
            return api.server.failures[key]
        return "no error"


# -- async -----------------------------------------------------------------------------------


@async_snippet
async def async_chat(api: Api) -> Any:
    async with api.make() as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        return completion.to_dict()


@async_snippet
async def async_stream_canonical_loop(api: Api) -> Any:
    async with api.make() as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        parts = []
        async for chunk in stream:
            parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)


@async_snippet
async def async_stream_tools_and_usage(api: Api) -> Any:
    async with api.make() as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            tools=[WEATHER],
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        pieces = [tc.to_dict() for c in chunks[:-1] for tc in c.choices[0].delta.tool_calls or []]
        return [pieces, chunks[-1].choices, chunks[-1].usage.total_tokens]


@async_snippet
async def async_completion_stream(api: Api) -> Any:
    async with api.make() as client:
        stream = await client.completions.create(model=MODEL, prompt="Once", stream=True)
        return [chunk.to_dict() async for chunk in stream]


@async_snippet
async def async_embeddings(api: Api) -> Any:
    async with api.make() as client:
        result = await client.embeddings.create(model=EMBED_MODEL, input=["a", "b"])
        return result.to_dict()


@async_snippet
async def async_models(api: Api) -> Any:
    async with api.make() as client:
        iterated = [model.id async for model in client.models.list()]
        page = await client.models.list()
        retrieved = await client.models.retrieve(MODEL)
        return [iterated, [m.id for m in page.data], retrieved.to_dict()]


@async_snippet
async def async_errors(api: Api) -> Any:
    async with api.make() as client:
        views = []
        for model, headers in (("no-such-model", {}), (MODEL, {"x-test-status": "429"})):
            try:
                await client.chat.completions.create(
                    model=model, messages=MESSAGES, extra_headers=headers
                )
            except api.errors.APIStatusError as error:
                views.append(error_view(api, error))
        return views


@async_snippet
async def async_raw_response_and_with_options(api: Api) -> Any:
    async with api.make() as client:
        raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        copy = client.with_options(timeout=10.0)
        again = await copy.chat.completions.create(model=MODEL, messages=MESSAGES)
        return [raw.status_code, raw.parse().to_dict(), again.choices[0].message.content]


# -- the differential tests ------------------------------------------------------------------


CLIENTS = {"appsdk": _appsdk, "traced openai": _traced_openai}


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("name", sorted(SYNC))
def test_a_snippet_sees_the_same_through_openai_and_appsdk(
    server: OpenAIServer, name: str, client: str
) -> None:
    expected = SYNC[name](_openai(server, asynchronous=False))
    with capture_spans():
        got = SYNC[name](CLIENTS[client](server, False))
    assert expected != "no error"
    assert got == expected


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("name", sorted(ASYNC))
async def test_an_async_snippet_sees_the_same_through_openai_and_appsdk(
    server: OpenAIServer, name: str, client: str
) -> None:
    expected = await ASYNC[name](_openai(server, asynchronous=True))
    with capture_spans():
        got = await ASYNC[name](CLIENTS[client](server, True))
    assert got == expected


# -- apps that keep the openai SDK -----------------------------------------------------------


def _generations(captured: SpanCapture) -> list[CapturedObservation]:
    return [o for o in captured.observations() if o.type == "generation"]


def test_the_openai_sdk_gets_generations_and_one_trace_into_the_gateway(
    server: OpenAIServer,
) -> None:
    critical = appsdk.LLMDOptions(objective="critical", fairness_id="team-a")

    @appsdk.observe(as_type="chain")
    def rag() -> list[str]:
        with appsdk.openai.OpenAI(
            base_url=server.base_url, api_key="sk-test", options=critical
        ) as client:
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
            stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        return [answer.choices[0].message.content or "", streamed]

    with capture_spans() as captured:
        before = len(server.received)
        assert rag() == ["You said: What does llm-d do?"] * 2
        sent = server.received[before:]
    root = captured.by_name("rag")
    plain, streamed = _generations(captured)
    for generation, request in zip((plain, streamed), sent, strict=True):
        assert generation.parent_id == root.id and generation.model == MODEL
        _, trace_id, parent_id, flags = request.headers["traceparent"].split("-")
        assert trace_id == root.trace_id and parent_id == generation.id
        assert int(flags, 16) & 0x01, "the sampled flag must be set"
        assert request.headers["x-request-id"] == generation.attributes["llm_d.request_id"]
        assert request.headers["x-llm-d-inference-objective"] == "critical"
        assert request.headers["x-llm-d-inference-fairness-id"] == "team-a"
        assert generation.usage == {"input": 7, "output": 6, "total": 13}
        assert generation.output == [
            {"role": "assistant", "content": "You said: What does llm-d do?"}
        ]
    assert sent[1].body["stream_options"] == {"include_usage": True}
    assert "langfuse.observation.completion_start_time" in streamed.attributes
    # the openai SDK's own HTTP client is not instrumented: no span besides the three
    assert len(captured.spans) == 3


def test_the_openai_sdk_records_tools_errors_and_copies(server: OpenAIServer) -> None:
    client = appsdk.openai.instrument_openai(
        openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    )
    assert appsdk.openai.instrument_openai(client) is client  # twice: still one span per call
    with capture_spans() as captured, client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[WEATHER])
        with pytest.raises(openai.NotFoundError):
            client.with_options(timeout=5.0).chat.completions.create(
                model="no-such-model", messages=MESSAGES
            )
        client.embeddings.create(model=EMBED_MODEL, input="hello")
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        assert raw.parse().choices[0].message.content
    tools, failed, raw_generation = _generations(captured)
    (embedding,) = (o for o in captured.observations() if o.type == "embedding")
    assert tools.input == {"messages": MESSAGES, "tools": [WEATHER]}
    calls = tools.output[0]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert failed.level == "ERROR" and failed.attributes["error.type"] == "NotFoundError"
    assert embedding.usage == {"input": 1, "output": 0, "total": 1}
    assert raw_generation.output == [
        {"role": "assistant", "content": "You said: What does llm-d do?"}
    ]


def test_the_openai_sdk_sends_no_baggage_the_policy_does_not_allow(server: OpenAIServer) -> None:
    ctx = baggage.set_baggage("user.id", "alice@example.com")
    ctx = baggage.set_baggage("tenant", "acme", ctx)
    allowed = appsdk.Policy(baggage_allow=("tenant",))
    token = context_api.attach(ctx)
    try:
        with (
            capture_spans(),
            appsdk.openai.OpenAI(
                base_url=server.base_url, api_key="sk-test", policy=allowed
            ) as client,
        ):
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
    finally:
        context_api.detach(token)
    assert server.last().headers["baggage"] == "tenant=acme"


async def test_the_async_openai_sdk_is_traced_and_its_loop_sees_no_usage_chunk(
    server: OpenAIServer,
) -> None:
    with capture_spans() as captured:
        async with appsdk.openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-t") as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, tools=[WEATHER], stream=True
            )
            async with stream:
                chunks = [chunk async for chunk in stream]
            quick = client.with_options(max_retries=0)
            await quick.completions.create(model=MODEL, prompt="Once")
    assert all(chunk.choices for chunk in chunks)
    chat, text = _generations(captured)
    assert chat.usage == {"input": 7, "output": 7, "total": 14}
    assert chat.output[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert text.output == "Completion of: Once"


def test_importing_appsdk_does_not_import_openai() -> None:
    code = "import sys, appsdk, appsdk.llmd; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_raw_openai_stream_is_traced_without_changing_what_it_yields(
    server: OpenAIServer,
) -> None:
    with (
        capture_spans() as captured,
        appsdk.openai.OpenAI(base_url=server.base_url, api_key="sk-test") as client,
    ):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())
    assert text == "You said: What does llm-d do?"
    assert "stream_options" not in server.last().body
    (generation,) = _generations(captured)
    assert generation.level == "DEFAULT" and generation.output is None
