"""Gateway payloads as pydantic models shaped like the ``openai`` package's types.

Field names, nesting and the ``to_dict()`` / ``to_json()`` helpers follow openai's
``ChatCompletion``, ``ChatCompletionChunk``, ``Completion``, ``CreateEmbeddingResponse`` and
``Model``, so code written against openai reads them unchanged. Parsing is lenient: vLLM's
extra fields (``stop_reason``, ``token_ids``, ``kv_transfer_params``, ``reasoning_content``)
are kept and readable as attributes, and a missing field takes a harmless default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidatorFunctionWrapHandler, field_validator

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "CompletionUsage",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingResponse",
    "Function",
    "FunctionCall",
    "Model",
    "ModelList",
    "OpenAIObject",
    "TopLogprob",
    "Usage",
]


class OpenAIObject(BaseModel):
    """Base of every payload: lenient, with openai's ``to_dict()`` and ``to_json()``."""

    model_config = ConfigDict(extra="allow")

    def to_dict(
        self,
        *,
        mode: Literal["json", "python"] = "python",
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> dict[str, object]:
        """The payload as a dict; by default only the fields the gateway sent (as openai)."""
        return self.model_dump(
            mode=mode,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )

    def to_json(
        self,
        *,
        indent: int | None = 2,
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> str:
        """The payload as JSON text; by default only the fields the gateway sent (as openai)."""
        return self.model_dump_json(
            indent=indent,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )


class PromptTokensDetails(OpenAIObject):
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(OpenAIObject):
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(OpenAIObject):
    """Token counts; the last event of a stream carries them when usage was asked for."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


Usage = CompletionUsage


class Function(OpenAIObject):
    """The function a tool call names; ``arguments`` is JSON text as the model wrote it."""

    name: str = ""
    arguments: str = ""


FunctionCall = Function


class ChatCompletionMessageToolCall(OpenAIObject):
    """One tool call of an assistant message (``tc.function.name``, ``tc.function.arguments``)."""

    id: str = ""
    type: str = "function"
    function: Function = Function()


class TopLogprob(OpenAIObject):
    token: str = ""
    bytes: list[int] | None = None
    logprob: float = 0.0


class ChatCompletionTokenLogprob(OpenAIObject):
    token: str = ""
    bytes: list[int] | None = None
    logprob: float = 0.0
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(OpenAIObject):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class ChatCompletionMessage(OpenAIObject):
    """The assistant's message; it may be appended to ``messages`` for the next turn."""

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    function_call: FunctionCall | None = None
    annotations: list[Any] | None = None
    audio: Any = None


Message = ChatCompletionMessage


class Choice(OpenAIObject):
    index: int = 0
    message: ChatCompletionMessage = ChatCompletionMessage()
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


ChatChoice = Choice


class ChatCompletion(OpenAIObject):
    """A non-streamed chat completion (``choices[].message``)."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    @property
    def text(self) -> str:
        """The first choice's content ('' if none)."""
        return (self.choices[0].message.content or "") if self.choices else ""


class ChoiceDeltaToolCallFunction(OpenAIObject):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(OpenAIObject):
    """A piece of a tool call: the first names it (``id``, name), later ones add arguments."""

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None


class ChoiceDelta(OpenAIObject):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    function_call: ChoiceDeltaToolCallFunction | None = None


Delta = ChoiceDelta


class ChunkChoice(OpenAIObject):
    index: int = 0
    delta: ChoiceDelta = ChoiceDelta()
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(OpenAIObject):
    """One streamed chat event; with usage asked for, the last one has usage and no choices."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    @property
    def text(self) -> str:
        return "".join(choice.delta.content or "" for choice in self.choices)


class CompletionLogprobs(OpenAIObject):
    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(OpenAIObject):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(OpenAIObject):
    """A text completion (``choices[].text``)."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = []
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class CompletionChunk(Completion):
    """One streamed text-completion event (openai types these as ``Completion`` too)."""

    @property
    def text(self) -> str:
        return "".join(choice.text for choice in self.choices)


class Embedding(OpenAIObject):
    index: int = 0
    embedding: list[float] = []
    """The vector; with ``encoding_format="base64"`` the base64 text, as openai returns it."""
    object: str = "embedding"

    @field_validator("embedding", mode="wrap")
    @classmethod
    def _keep_base64(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return value if isinstance(value, str) else handler(value)


class CreateEmbeddingResponse(OpenAIObject):
    data: list[Embedding] = []
    model: str = ""
    object: str = "list"
    usage: CompletionUsage | None = None


EmbeddingResponse = CreateEmbeddingResponse


class Model(OpenAIObject):
    """A model (or LoRA adapter) the gateway serves."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""


ModelCard = Model


class ModelList(OpenAIObject):
    """The gateway's models: iterate it for :class:`Model` objects, as openai's page."""

    object: str = "list"
    data: list[Model] = []

    # A pydantic model iterates over (field, value) pairs; openai's page iterates its items,
    # and code written for openai (``for m in client.models.list()``) relies on that.
    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)

    def ids(self) -> list[str]:
        return [card.id for card in self.data]


def first_finish_reasons(choices: list[Any]) -> list[str]:
    return [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
