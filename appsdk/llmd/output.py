"""What a generation records as its output, from an answer or from the chunks of a stream.

The output is what Langfuse renders: for chat, a list of assistant messages in OpenAI's shape
(one per choice; ``tool_calls`` as ``[{"id", "type", "function": {"name", "arguments"}}]``);
for a text completion, the text. Duck-typed, so the same code reads appsdk's payloads and the
``openai`` package's (:mod:`appsdk.openai`). No I/O.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StreamAccumulator", "chat_output", "completion_output", "message_record"]


def _tool_call_record(call: Any) -> dict[str, Any]:
    function = getattr(call, "function", None)
    record: dict[str, Any] = {"id": call.id, "type": getattr(call, "type", None) or "function"}
    if function is not None:
        record["function"] = {"name": function.name, "arguments": function.arguments}
    else:  # a custom tool call: keep what it carries
        custom = getattr(call, "custom", None)
        if custom is not None:
            record["custom"] = custom.model_dump() if hasattr(custom, "model_dump") else custom
    return record


def message_record(message: Any) -> dict[str, Any]:
    """An assistant message as Langfuse and the OpenAI API spell it."""
    tool_calls = getattr(message, "tool_calls", None)
    content = message.content
    record: dict[str, Any] = {
        "role": getattr(message, "role", None) or "assistant",
        "content": content if tool_calls else (content or ""),
    }
    refusal = getattr(message, "refusal", None)
    if refusal:
        record["refusal"] = refusal
    if tool_calls:
        record["tool_calls"] = [_tool_call_record(call) for call in tool_calls]
    return record


def chat_output(choices: list[Any]) -> list[dict[str, Any]]:
    """One assistant message per choice, in choice order."""
    if len(choices) > 1:
        choices = sorted(choices, key=_index)
    return [message_record(choice.message) for choice in choices]


def completion_output(choices: list[Any]) -> Any:
    """The text of a completion (a list of texts when ``n > 1``)."""
    texts = [choice.text for choice in sorted(choices, key=_index)]
    if len(texts) == 1:
        return texts[0]
    return texts or ""


def _index(choice: Any) -> int:
    return getattr(choice, "index", 0) or 0


class _ChoiceParts:
    """One choice of a stream as it arrives: content pieces and tool calls by index."""

    __slots__ = ("content", "refusal", "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def add_tool_call(self, piece: Any) -> None:
        call = self.tool_calls.get(piece.index)
        if call is None:
            call = self.tool_calls[piece.index] = {"id": "", "type": "function", "name": ""}
            call["arguments"] = []
        if piece.id:
            call["id"] = piece.id
        if getattr(piece, "type", None):
            call["type"] = piece.type
        function = piece.function
        if function is not None:
            if function.name:
                call["name"] += function.name
            if function.arguments:
                call["arguments"].append(function.arguments)

    def record(self) -> dict[str, Any]:
        calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        content = "".join(self.content)
        record: dict[str, Any] = {"role": self.role, "content": content or (None if calls else "")}
        if self.refusal:
            record["refusal"] = "".join(self.refusal)
        if calls:
            record["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": call["type"],
                    "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
                }
                for call in calls
            ]
        return record


class StreamAccumulator:
    """Everything a stream has said so far, for the generation: output, usage, ids, reasons."""

    __slots__ = (
        "chat",
        "choices",
        "chunks",
        "finish_reasons",
        "response_id",
        "response_model",
        "texts",
        "usage",
    )

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.choices: dict[int, _ChoiceParts] = {}
        self.texts: dict[int, list[str]] = {}
        self.usage: Any = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.chunks = 0

    def add(self, chunk: Any) -> bool:
        """Take one chunk; True when it carried output (content, a tool call, a refusal)."""
        self.chunks += 1
        self.response_id = self.response_id or chunk.id or None
        self.response_model = chunk.model or self.response_model
        if chunk.usage is not None:
            self.usage = chunk.usage
        produced = False
        for choice in chunk.choices:
            if self.chat:
                produced = self._add_delta(choice) or produced
            elif choice.text:
                self.texts.setdefault(_index(choice), []).append(choice.text)
                produced = True
            if choice.finish_reason:
                self.finish_reasons.append(choice.finish_reason)
        return produced

    def _add_delta(self, choice: Any) -> bool:
        delta = choice.delta
        index = _index(choice)
        parts = self.choices.get(index)
        if parts is None:
            parts = self.choices[index] = _ChoiceParts()
        produced = False
        if delta.content:
            parts.content.append(delta.content)
            produced = True
        if delta.role:
            parts.role = delta.role
        tool_calls = delta.tool_calls
        if tool_calls:
            for piece in tool_calls:
                parts.add_tool_call(piece)
            produced = True
        refusal = getattr(delta, "refusal", None)
        if refusal:
            parts.refusal.append(refusal)
            produced = True
        return produced

    @property
    def text(self) -> str:
        """The first choice's content (or text) so far."""
        if self.chat:
            parts = self.choices.get(0)
            return "".join(parts.content) if parts is not None else ""
        return "".join(self.texts.get(0, ()))

    @property
    def has_output(self) -> bool:
        return bool(self.choices or self.texts)

    def output(self) -> Any:
        if self.chat:
            if not self.choices:
                return [{"role": "assistant", "content": ""}]
            return [self.choices[i].record() for i in sorted(self.choices)]
        texts = ["".join(self.texts[i]) for i in sorted(self.texts)]
        return texts[0] if len(texts) == 1 else (texts or "")
