"""Gateway payloads as pydantic models that tolerate vLLM's extra fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Completion",
    "CompletionChunk",
    "EmbeddingResponse",
    "ModelList",
    "Usage",
]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class PromptTokensDetails(_Lenient):
    cached_tokens: int | None = None


class Usage(_Lenient):
    prompt_tokens: int = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None


class Message(_Lenient):
    role: str = "assistant"
    content: str | None = None


class ChatChoice(_Lenient):
    index: int = 0
    message: Message = Message()
    finish_reason: str | None = None


class ChatCompletion(_Lenient):
    """A non-streamed chat completion (``choices[].message``)."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[ChatChoice] = []
    usage: Usage | None = None

    @property
    def text(self) -> str:
        """The first choice's content ('' if none)."""
        return (self.choices[0].message.content or "") if self.choices else ""


class Delta(_Lenient):
    role: str | None = None
    content: str | None = None


class ChunkChoice(_Lenient):
    index: int = 0
    delta: Delta = Delta()
    finish_reason: str | None = None


class ChatCompletionChunk(_Lenient):
    """One streamed chat event; the last one carries ``usage`` and no choices."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(choice.delta.content or "" for choice in self.choices)


class CompletionChoice(_Lenient):
    index: int = 0
    text: str = ""
    finish_reason: str | None = None


class Completion(_Lenient):
    """A text completion (``choices[].text``)."""

    id: str = ""
    object: str = "text_completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = []
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


class CompletionChunk(Completion):
    """One streamed text-completion event."""

    @property
    def text(self) -> str:
        return "".join(choice.text for choice in self.choices)


class Embedding(_Lenient):
    index: int = 0
    embedding: list[float] = []


class EmbeddingResponse(_Lenient):
    data: list[Embedding] = []
    model: str = ""
    usage: Usage | None = None


class ModelCard(_Lenient):
    id: str
    object: str = "model"
    owned_by: str | None = None


class ModelList(_Lenient):
    data: list[ModelCard] = []

    def ids(self) -> list[str]:
        return [card.id for card in self.data]


def first_finish_reasons(choices: list[Any]) -> list[str]:
    return [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
