"""What a typed call sends and how its answer is read: shared by sync and async, no I/O."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from appsdk.llmd import headers as h
from appsdk.llmd.errors import ResponseError
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    EmbeddingResponse,
    first_finish_reasons,
)
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

__all__ = ["Call", "build_call"]

_OPTION_NAMES = ("objective", "fairness_id", "slo_ttft_ms", "slo_tpot_ms", "model_rewrite")
_PATHS = {
    "chat": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
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

    def parse_json(self, content: bytes) -> ChatCompletion | Completion | EmbeddingResponse:
        """Parse the raw body (pydantic's JSON parser, faster than json.loads + validate)."""
        return self.parse(content)

    def parse(self, data: Any) -> ChatCompletion | Completion | EmbeddingResponse:
        kinds: dict[str, type[ChatCompletion | Completion | EmbeddingResponse]] = {
            "chat": ChatCompletion,
            "text_completion": Completion,
            "embeddings": EmbeddingResponse,
        }
        kind = kinds[self.operation]
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
        """Record a non-streamed answer on the generation and end it."""
        output: Any = None
        if isinstance(result, ChatCompletion):
            output = [{"role": "assistant", "content": result.text}]
        elif isinstance(result, Completion):
            output = result.text
        generation.succeed(
            response_id=getattr(result, "id", None) or None,
            response_model=result.model or None,
            finish_reasons=first_finish_reasons(getattr(result, "choices", [])),
            usage=result.usage,
            output=output,
        )


def _compile_prompt(prompt: Any, variables: Mapping[str, Any] | None) -> Any:
    compile_ = getattr(prompt, "compile", None)
    if compile_ is None:
        raise TypeError("prompt= takes a prompt object with compile() (appsdk.get_prompt)")
    return compile_(**dict(variables or {}))


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
    if content is None:
        field_name = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}
        raise TypeError(f"{field_name[operation]}= is required")
    body: dict[str, Any] = {"model": model}
    body.update({k: v for k, v in config.items() if k not in params})
    body.update({k: v for k, v in params.items() if v is not None})
    body[{"chat": "messages", "text_completion": "prompt", "embeddings": "input"}[operation]] = (
        content
    )
    if stream:
        body["stream"] = True
        # Without include_usage vLLM sends no usage on streams: ask for it unless told not to.
        stream_options = dict(body.get("stream_options") or {})
        stream_options.setdefault("include_usage", True)
        body["stream_options"] = stream_options
    if extra_body:
        body.update(extra_body)
    rid = request_id or os.urandom(16).hex()
    request_headers = {h.REQUEST_ID: rid, **options.merged(overrides).headers()}
    if extra_headers:
        request_headers.update(extra_headers)
    return Call(
        operation, str(model), _PATHS[operation], body, request_headers, rid, content, prompt=prompt
    )
