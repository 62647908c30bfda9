"""Streamed answers: iterate chunks; the generation ends when the stream does.

Breaking out early (or closing, or leaving the ``with`` block) ends the generation with what
arrived, marked as cancelled, and returns the connection to the pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError
from pydantic import ValidationError

from appsdk.llmd.calls import Call
from appsdk.llmd.errors import (
    LLMDError,
    ResponseError,
    ResponseTooLargeError,
    StreamError,
    parse_error_body,
)
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import ChatCompletionChunk, CompletionChunk, Usage

__all__ = ["AsyncStream", "Stream"]

Chunk = ChatCompletionChunk | CompletionChunk


class _StreamState:
    """What a stream has received so far; turns SSE data into chunks or errors."""

    def __init__(self, call: Call, generation: Generation, max_bytes: int) -> None:
        self.call = call
        self.generation = generation
        self.max_bytes = max_bytes
        self.bytes = 0
        self.chunk_type = call.chunk_type()
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.chunks = 0
        self.done = False

    @property
    def text(self) -> str:
        """The content received so far."""
        return "".join(self.parts)

    def output(self) -> Any:
        text = self.text
        return [{"role": "assistant", "content": text}] if self.call.operation == "chat" else text

    def handle(self, data: str) -> Chunk | None:
        """A chunk, or None for ``[DONE]``; raises the stream's error event as StreamError."""
        if data.strip() == "[DONE]":
            return None
        self.bytes += len(data)
        if self.bytes > self.max_bytes:
            raise ResponseTooLargeError(
                f"the stream is larger than max_response_bytes={self.max_bytes}",
                request_id=self.call.request_id,
            )
        if '"error"' in data[:16]:
            message, code = parse_error_body(data)
            raise StreamError(
                f"error event mid-stream: {message}", code=code, request_id=self.call.request_id
            )
        try:
            # pydantic's JSON parser validates in one pass, cheaper than json.loads first.
            chunk = self.chunk_type.model_validate_json(data)
        except ValidationError as exc:
            raise ResponseError(
                "the gateway sent a malformed stream event (not JSON, or not a chunk: "
                f"{exc.errors()[0]['msg']})",
                request_id=self.call.request_id,
            ) from None
        self.chunks += 1
        self.response_id = self.response_id or chunk.id or None
        self.response_model = chunk.model or self.response_model
        if chunk.usage is not None:
            self.usage = chunk.usage
        text = chunk.text
        if text:
            self.generation.first_chunk()
            self.parts.append(text)
        for choice in chunk.choices:
            if choice.finish_reason:
                self.finish_reasons.append(choice.finish_reason)
        return chunk

    def finish(self) -> None:
        self.done = True
        self.generation.succeed(
            response_id=self.response_id,
            response_model=self.response_model,
            finish_reasons=self.finish_reasons,
            usage=self.usage,
            output=self.output(),
        )

    def fail(self, error: BaseException) -> LLMDError:
        self.done = True
        if not isinstance(error, LLMDError):
            error = StreamError(
                f"the stream broke off after {self.chunks} chunks ({type(error).__name__})",
                request_id=self.call.request_id,
            )
        self.generation.fail(error, output=self.output() if self.parts else None)
        return error

    def cancel(self) -> None:
        self.done = True
        self.generation.response_model = self.response_model
        self.generation.cancelled(
            received_chunks=self.chunks, output=self.output(), usage=self.usage
        )


_BROKEN = (httpx.HTTPError, SSEError)


class _StreamBase:
    """What both streams share: the response, what arrived, and its text and usage."""

    def __init__(
        self, response: httpx.Response, call: Call, generation: Generation, max_bytes: int
    ) -> None:
        self.response = response
        self._state = _StreamState(call, generation, max_bytes)

    @property
    def text(self) -> str:
        """The content received so far."""
        return self._state.text

    @property
    def usage(self) -> Usage | None:
        """Token usage, once the final event carried it."""
        return self._state.usage


class Stream(_StreamBase, Iterator[Chunk]):
    """A streamed answer: iterate it for chunks; ``text`` and ``usage`` once it is done."""

    def __init__(
        self, response: httpx.Response, call: Call, generation: Generation, max_bytes: int
    ) -> None:
        super().__init__(response, call, generation, max_bytes)
        self._events = EventSource(response).iter_sse()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Chunk:
        state = self._state
        if state.done:
            raise StopIteration
        try:
            for event in self._events:
                chunk = state.handle(event.data)
                if chunk is None:
                    break
                return chunk
        except (LLMDError, *_BROKEN, ValueError) as exc:
            self.response.close()
            raise state.fail(exc) from (None if isinstance(exc, LLMDError) else exc)
        self.response.close()
        state.finish()
        raise StopIteration

    def close(self) -> None:
        """Stop reading: the generation ends with what arrived, marked cancelled."""
        if not self._state.done:
            self._state.cancel()
        self.response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._state.done:
            self.close()


class AsyncStream(_StreamBase, AsyncIterator[Chunk]):
    """The async twin of :class:`Stream`; prefer ``async with`` so the connection is freed."""

    def __init__(
        self, response: httpx.Response, call: Call, generation: Generation, max_bytes: int
    ) -> None:
        super().__init__(response, call, generation, max_bytes)
        self._events = EventSource(response).aiter_sse()

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Chunk:
        state = self._state
        if state.done:
            raise StopAsyncIteration
        try:
            async for event in self._events:
                chunk = state.handle(event.data)
                if chunk is None:
                    break
                return chunk
        except (LLMDError, *_BROKEN, ValueError) as exc:
            await self.response.aclose()
            raise state.fail(exc) from (None if isinstance(exc, LLMDError) else exc)
        await self.response.aclose()
        state.finish()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._state.done:
            self._state.cancel()
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # No awaiting here: end the generation; the response is freed with its pool.
        if not self._state.done:
            self._state.cancel()
