"""What a typed call sends and how its answer is read: shared by sync and async, no I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from appsdk.llmd import headers as h
from appsdk.llmd.errors import ResponseError
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    CreateEmbeddingResponse,
    first_finish_reasons,
)
from appsdk.llmd.output import chat_output, completion_output
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

__all__ = ["Call", "build_call", "encode_body", "record_answer"]

_OPTION_NAMES = ("objective", "fairness_id", "slo_ttft_ms", "slo_tpot_ms", "model_rewrite")
_PATHS = {
    "chat": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
_CONTENT_FIELD = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}
# openai's "not given" markers: code ported from openai may pass them; they mean "leave out".
_NOT_GIVEN_TYPES = frozenset({"NotGiven", "Omit"})
Answer = ChatCompletion | Completion | CreateEmbeddingResponse
_KINDS: dict[str, type[Answer]] = {
    "chat": ChatCompletion,
    "text_completion": Completion,
    "embeddings": CreateEmbeddingResponse,
}


@dataclass
class Call:
    """One typed request: path, body, headers, and how to record and parse it."""

    operation: str
    model: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    request_id: str
    content: Any
    prompt: Any = None
    query: dict[str, Any] | None = None
    auto_usage: bool = False
    """The client asked for the usage chunk on its own account: it is not shown to the caller."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def start_generation(self, prices: PriceTable | None, policy: Policy | None) -> Generation:
        return Generation(
            operation=self.operation,
            model=self.model,
            body=self.body,
            request_id=self.request_id,
            content=self.content,
            prices=prices,
            policy=policy,
            prompt=self.prompt,
        )

    def parse_json(self, content: bytes) -> Answer:
        """Parse the raw body (pydantic's JSON parser, faster than json.loads + validate)."""
        return self.parse(content)

    def parse(self, data: Any) -> Answer:
        kind = _KINDS[self.operation]
        try:
            if isinstance(data, bytes):
                return kind.model_validate_json(data)
            return kind.model_validate(data)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise json.JSONDecodeError("not JSON", "", 0) from None
            raise ResponseError(
                f"the gateway's {self.operation} answer does not fit the API: "
                f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}",
                request_id=self.request_id,
            ) from None

    def chunk_type(self) -> type[ChatCompletionChunk | CompletionChunk]:
        return ChatCompletionChunk if self.operation == "chat" else CompletionChunk

    def record(self, generation: Generation, result: Any) -> None:
        """Record a non-streamed answer on the generation and end it (duck-typed: appsdk's
        payloads and openai's read the same)."""
        record_answer(generation, self.operation, result)


def record_answer(generation: Generation, operation: str, result: Any) -> None:
    """Record an answer (appsdk's or openai's types) on ``generation`` and end it."""
    choices = getattr(result, "choices", None) or []
    output: Any = None
    if operation == "chat":
        output = chat_output(choices)
    elif operation == "text_completion":
        output = completion_output(choices)
    generation.succeed(
        response_id=getattr(result, "id", None) or None,
        response_model=getattr(result, "model", None) or None,
        finish_reasons=first_finish_reasons(choices),
        usage=getattr(result, "usage", None),
        output=output,
    )


def _json_default(value: Any) -> Any:
    # A pydantic object in a request (an assistant message handed back for the next turn, as
    # openai allows) goes as the fields the gateway sent.
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True, by_alias=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The JSON request body, encoded as httpx would (compact, UTF-8, no NaN)."""
    return json.dumps(
        body, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
    ).encode()


def _content(operation: str, content: Any) -> Any:
    # openai takes any iterable of messages; a generator must become a list to be sent.
    if (
        operation == "chat"
        and not isinstance(content, list | tuple | str | bytes | Mapping)
        and isinstance(content, Iterable)
    ):
        return list(content)
    return content


def _compile_prompt(prompt: Any, variables: Mapping[str, Any] | None) -> Any:
    compile_ = getattr(prompt, "compile", None)
    if compile_ is None:
        raise TypeError("prompt= takes a prompt object with compile() (appsdk.get_prompt)")
    return compile_(**dict(variables or {}))


def _ask_for_usage(body: dict[str, Any]) -> bool:
    """Make ``body`` a stream request; True when the client asked for usage on its own.

    Without ``include_usage`` vLLM sends no usage on streams: ask for it unless told not to,
    and keep the extra chunk from a caller who did not ask (its choices are empty).
    """
    body["stream"] = True
    stream_options = dict(body.get("stream_options") or {})
    asked = "include_usage" not in stream_options
    if asked:
        stream_options["include_usage"] = True
    body["stream_options"] = stream_options
    return asked


def _given(value: Any) -> bool:
    return value is not None and type(value).__name__ not in _NOT_GIVEN_TYPES


def build_call(
    operation: str,
    *,
    model: str | None,
    content: Any,
    stream: bool,
    prompt: Any,
    variables: Mapping[str, Any] | None,
    request_id: str | None,
    options: h.LLMDOptions,
    extra_headers: Mapping[str, str] | None,
    extra_body: Mapping[str, Any] | None,
    extra_query: Mapping[str, Any] | None = None,
    params: dict[str, Any],
) -> Call:
    """The request for a chat, completion or embedding call.

    ``prompt=`` compiles the prompt with ``variables`` into the messages (or text) and takes
    model parameters from its ``config`` unless the call gives them.

    Raises:
        TypeError: the arguments do not make a request (named in the message).
    """
    overrides = {name: params.pop(name) for name in _OPTION_NAMES if name in params}
    config: dict[str, Any] = {}
    if prompt is not None:
        if content is not None:
            raise TypeError("give either prompt= (compiled for you) or the messages/prompt text")
        content = _compile_prompt(prompt, variables)
        config = dict(getattr(prompt, "config", None) or {})
    model = model or config.pop("model", None)
    config.pop("model", None)
    if not model:
        raise TypeError("model= is required (or a prompt whose config names the model)")
    if not _given(content):
        raise TypeError(f"{_CONTENT_FIELD[operation]}= is required")
    content = _content(operation, content)
    body: dict[str, Any] = {"model": model}
    body.update({k: v for k, v in config.items() if k not in params})
    body.update({k: v for k, v in params.items() if _given(v)})
    body[_CONTENT_FIELD[operation]] = content
    auto_usage = _ask_for_usage(body) if stream else False
    if extra_body:
        body.update(extra_body)
    rid = request_id or h.new_request_id()
    request_headers = {
        h.REQUEST_ID: rid,
        "content-type": "application/json",
        **options.merged(overrides).headers(),
    }
    if extra_headers:
        request_headers.update({k: v for k, v in extra_headers.items() if _given(v)})
    query = {k: v for k, v in extra_query.items() if _given(v)} if extra_query else None
    return Call(
        operation,
        str(model),
        _PATHS[operation],
        body,
        request_headers,
        rid,
        content,
        prompt=prompt,
        query=query or None,
        auto_usage=auto_usage,
    )
