"""The keyword arguments of the typed calls, as TypedDicts: one typed spelling per call.

The client methods and their openai-shaped aliases (``client.chat.completions.create``) take
``**params: Unpack[ChatParams]``, so a type checker knows every argument and, through the
``stream: Literal[True] / Literal[False]`` overloads, what comes back. At run time any other
keyword is sent in the body as given (vLLM has many); openai code passes those in
``extra_body``, which works too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

import httpx
from pydantic import BaseModel

__all__ = [
    "ChatParams",
    "CompletionParams",
    "EmbeddingInput",
    "EmbeddingParams",
    "ListOptions",
    "MessageParam",
    "RequestOptions",
    "Timeout",
]

Timeout = float | httpx.Timeout | None
EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]
MessageParam = Mapping[str, Any] | BaseModel
"""A message: a dict in OpenAI's shape, or an assistant message handed back for the next turn."""


class ListOptions(TypedDict, total=False):
    """Per-call options of ``models.list()`` / ``models.retrieve()`` (openai's)."""

    request_id: str | None
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: Timeout


class RequestOptions(TypedDict, total=False):
    """Per-call options every typed call takes."""

    request_id: str | None
    """The ``x-request-id`` (vLLM's request id); generated when not given."""
    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: Timeout
    objective: str | None
    fairness_id: str | None
    slo_ttft_ms: int | None
    slo_tpot_ms: int | None
    model_rewrite: str | None


class _Sampling(TypedDict, total=False):
    model: str
    temperature: float | None
    top_p: float | None
    n: int | None
    max_tokens: int | None
    stop: str | Sequence[str] | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: Mapping[str, int] | None
    seed: int | None
    user: str | None
    stream_options: Mapping[str, object] | None
    variables: Mapping[str, Any] | None
    """Values for a prompt object's variables (``prompt=``)."""
    # vLLM's own sampling parameters.
    top_k: int | None
    min_p: float | None
    repetition_penalty: float | None
    min_tokens: int | None
    ignore_eos: bool | None


class ChatParams(RequestOptions, _Sampling, total=False):
    """``client.chat(...)`` / ``client.chat.completions.create(...)`` arguments."""

    messages: Iterable[MessageParam]
    prompt: Any
    """A prompt object (``appsdk.get_prompt``) compiled into the messages for you."""
    max_completion_tokens: int | None
    logprobs: bool | None
    top_logprobs: int | None
    tools: Iterable[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: Mapping[str, Any] | None
    reasoning_effort: str | None
    metadata: Mapping[str, str] | None
    store: bool | None
    service_tier: str | None
    modalities: Sequence[str] | None
    prediction: Mapping[str, Any] | None
    functions: Iterable[Mapping[str, Any]] | None
    function_call: str | Mapping[str, Any] | None


class CompletionParams(RequestOptions, _Sampling, total=False):
    """``client.complete(...)`` / ``client.completions.create(...)`` arguments."""

    prompt: Any
    """The text (or texts, or token ids), or a prompt object compiled for you."""
    echo: bool | None
    logprobs: int | None
    best_of: int | None
    suffix: str | None


class EmbeddingParams(RequestOptions, total=False):
    """``client.embed(...)`` / ``client.embeddings.create(...)`` arguments besides model and
    input."""

    dimensions: int | None
    encoding_format: str | None
    user: str | None
