"""Streamed answers: iterate chunks; the generation ends when the stream does.

Breaking out early (or closing, or leaving the ``with`` block) ends the generation with what
arrived, marked as cancelled, and returns the connection to the pool.

A stream is bounded: its decoded size by ``max_response_bytes``, its life by a total deadline,
and the time between events that carry data by the read timeout (keep-alive comments are not
progress). It succeeds only with ``[DONE]``: an answer that just stops is a :class:`StreamError`
with the partial output recorded. The usage chunk the client asked for on its own account is
read here and never shown to the caller.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

import httpx

from appsdk.llmd import http_span
from appsdk.llmd.base import already_read, encoding_of
from appsdk.llmd.body import Decoder, EventParser, LimitExceeded
from appsdk.llmd.calls import Call
from appsdk.llmd.errors import (
    ErrorBody,
    LLMDError,
    LLMDTimeoutError,
    ResponseError,
    ResponseTooLargeError,
    StreamError,
    error_from_exception,
)
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import ChatCompletionChunk, CompletionChunk, CompletionUsage
from appsdk.llmd.output import StreamAccumulator

__all__ = ["AsyncStream", "Stream"]

ChunkT = TypeVar("ChunkT", ChatCompletionChunk, CompletionChunk)
_BROKEN = (httpx.HTTPError, ValueError, zlib.error)


class _StreamState:
    """What a stream has received so far; turns raw bytes into chunks, errors and records."""

    def __init__(
        self,
        response: httpx.Response,
        call: Call,
        generation: Generation,
        max_bytes: int,
        deadline_s: float | None,
    ) -> None:
        self.call = call
        self.generation = generation
        self.max_bytes = max_bytes
        self.chunk_type = call.chunk_type()
        self.decoder = Decoder(encoding_of(response))
        self.parser = EventParser(max_bytes)
        self.received = StreamAccumulator(call.operation == "chat")
        self.ready: deque[Any] = deque()
        self.finished = False
        self.saw_done = False
        now = time.monotonic()
        self.deadline = now + deadline_s if deadline_s is not None else None
        self.deadline_s = deadline_s
        timeouts = response.request.extensions.get("timeout") or {}
        self.idle_s: float | None = timeouts.get("read")
        self.last_progress = now

    def feed(self, raw: bytes) -> None:
        """Decode ``raw`` and queue the chunks it completes; raises the stream's errors."""
        pieces = (raw,) if self.decoder.passthrough else self.decoder.decode(raw)
        progressed = False
        for piece in pieces:
            try:
                events = self.parser.feed(piece)
            except LimitExceeded as exc:
                raise ResponseTooLargeError(
                    f"the stream is larger than max_response_bytes={self.max_bytes} "
                    f"({exc.size} bytes read)",
                    request_id=self.call.request_id,
                ) from None
            for data in events:
                progressed = True
                self.handle(data)
        self.check_time(progressed)

    def check_time(self, progressed: bool) -> None:
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise LLMDTimeoutError(
                f"the stream did not finish within its deadline of {self.deadline_s} s",
                request_id=self.call.request_id,
            )
        if progressed:
            self.last_progress = now
        elif self.idle_s is not None and now - self.last_progress > self.idle_s:
            raise LLMDTimeoutError(
                f"no data from the stream for {self.idle_s} s (keep-alives only)",
                request_id=self.call.request_id,
            )

    def handle(self, data: str) -> None:
        if self.saw_done:
            return
        if data == "[DONE]" or data.strip() == "[DONE]":
            self.saw_done = True
            return
        if '"error"' in data[:16]:
            error = ErrorBody(data)
            raise StreamError(
                f"error event mid-stream: {error.message}",
                code=error.code,
                type=error.type,
                param=error.param,
                body=error.body,
                request_id=self.call.request_id,
            )
        try:
            # pydantic's JSON parser validates in one pass, cheaper than json.loads first.
            chunk = self.chunk_type.model_validate_json(data)
        except ValueError as exc:
            raise ResponseError(
                f"the gateway sent a malformed stream event (not JSON, or not a chunk: {exc})",
                request_id=self.call.request_id,
            ) from None
        if self.received.add(chunk):
            self.generation.first_chunk()
        if self.call.auto_usage and not chunk.choices and chunk.usage is not None:
            return  # asked for by the client, not the caller: recorded, not shown
        self.ready.append(chunk)

    def end_of_body(self) -> None:
        """The body ended: fine after ``[DONE]``, else the answer was cut short."""
        if not self.saw_done:
            raise StreamError(
                f"the stream ended without [DONE] after {self.received.chunks} chunks; "
                "the answer may be cut short",
                request_id=self.call.request_id,
            )

    def finish(self) -> None:
        self.finished = True
        received = self.received
        self.generation.succeed(
            response_id=received.response_id,
            response_model=received.response_model,
            finish_reasons=received.finish_reasons,
            usage=received.usage,
            output=received.output(),
        )

    def fail(self, error: BaseException) -> LLMDError:
        self.finished = True
        if isinstance(error, httpx.HTTPError):
            cause = error_from_exception(error, self.call.request_id)
            error = (
                cause
                if isinstance(cause, LLMDTimeoutError)
                else StreamError(
                    f"the stream broke off after {self.received.chunks} chunks "
                    f"({type(error).__name__})",
                    request_id=self.call.request_id,
                )
            )
        elif not isinstance(error, LLMDError):
            error = ResponseError(
                f"the gateway sent a stream that cannot be read ({type(error).__name__})",
                request_id=self.call.request_id,
            )
        received = self.received
        self.generation.response_model = received.response_model
        self.generation.fail(error, output=received.output() if received.has_output else None)
        return error

    def cancel(self) -> None:
        self.finished = True
        received = self.received
        self.generation.response_model = received.response_model
        self.generation.cancelled(
            received_chunks=received.chunks, output=received.output(), usage=received.usage
        )


async def _read_already(response: httpx.Response) -> AsyncIterator[bytes]:
    yield response.content


class _StreamBase(Generic[ChunkT]):
    """What both streams share: the response, what arrived, and its text and usage."""

    def __init__(
        self,
        response: httpx.Response,
        call: Call,
        generation: Generation,
        max_bytes: int,
        deadline_s: float | None = None,
    ) -> None:
        self.response = response
        """The ``httpx.Response`` (headers, status) the stream is read from."""
        self._state = _StreamState(response, call, generation, max_bytes, deadline_s)

    @property
    def text(self) -> str:
        """The content received so far (of the first choice)."""
        return self._state.received.text

    @property
    def usage(self) -> CompletionUsage | None:
        """Token usage, once the final event carried it."""
        usage: CompletionUsage | None = self._state.received.usage
        return usage


class Stream(_StreamBase[ChunkT], Iterator[ChunkT]):
    """A streamed answer: iterate it for chunks; ``text`` and ``usage`` once it is done.

    Example:
        >>> with client.chat(model="m", messages=msgs, stream=True) as stream:  # doctest: +SKIP
        ...     for chunk in stream:
        ...         print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(
        self,
        response: httpx.Response,
        call: Call,
        generation: Generation,
        max_bytes: int,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(response, call, generation, max_bytes, deadline_s)
        self._raw = iter((response.content,)) if already_read(response) else response.iter_raw()

    def __iter__(self) -> Stream[ChunkT]:
        return self

    def __next__(self) -> ChunkT:
        state = self._state
        ready = state.ready
        while not ready:
            if state.finished:
                raise StopIteration
            try:
                # Read on after [DONE] to the end of the body, so the connection can be reused.
                raw = next(self._raw, None)
                if raw is None:
                    state.end_of_body()
                    state.finish()
                    raise StopIteration
                state.feed(raw)
            except (LLMDError, *_BROKEN) as exc:
                http_span.failed(self.response, exc)
                self.response.close()
                raise state.fail(exc) from (None if isinstance(exc, LLMDError) else exc)
        chunk: ChunkT = ready.popleft()
        return chunk

    def close(self) -> None:
        """Stop reading: the generation ends with what arrived, marked cancelled."""
        try:
            self.response.close()  # first: the HTTP span ends before its generation
        finally:
            if not self._state.finished:
                self._state.cancel()

    def __enter__(self) -> Stream[ChunkT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        state = getattr(self, "_state", None)  # None: the constructor failed
        if state is not None and not state.finished:
            self.close()


class AsyncStream(_StreamBase[ChunkT], AsyncIterator[ChunkT]):
    """The async twin of :class:`Stream`; prefer ``async with`` so the connection is freed."""

    def __init__(
        self,
        response: httpx.Response,
        call: Call,
        generation: Generation,
        max_bytes: int,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(response, call, generation, max_bytes, deadline_s)
        self._raw = _read_already(response) if already_read(response) else response.aiter_raw()

    def __aiter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __anext__(self) -> ChunkT:
        state = self._state
        ready = state.ready
        while not ready:
            if state.finished:
                raise StopAsyncIteration
            try:
                raw = await anext(self._raw, None)
                if raw is None:
                    state.end_of_body()
                    state.finish()
                    raise StopAsyncIteration
                state.feed(raw)
            except (LLMDError, *_BROKEN) as exc:
                http_span.failed(self.response, exc)
                await self.response.aclose()
                raise state.fail(exc) from (None if isinstance(exc, LLMDError) else exc)
        chunk: ChunkT = ready.popleft()
        return chunk

    async def aclose(self) -> None:
        """Stop reading: the generation ends with what arrived, marked cancelled."""
        try:
            await self.response.aclose()  # first: the HTTP span ends before its generation
        finally:
            if not self._state.finished:
                self._state.cancel()

    close = aclose
    """openai's name for :meth:`aclose` on its ``AsyncStream``."""

    async def __aenter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # No awaiting here: end the HTTP span, then the generation; the response is freed
        # with its pool.
        state = getattr(self, "_state", None)
        if state is not None and not state.finished:
            http_span.end(self.response)
            state.cancel()
