"""The HTTP client span of a streamed answer lasts as long as the stream.

opentelemetry-instrumentation-httpx still makes the span (its name, attributes, metrics and
``traceparent`` injection are unchanged); it ends it when the transport returns, which for a
stream is when the headers arrive, so the gateway's and vLLM's spans would outlive their
parent. Two public hooks of ``instrument_client`` change only *when* it ends:

- its ``tracer_provider`` is :data:`PROVIDER`, whose tracer leaves the span open when an
  :class:`SpanEndingTransport` around the instrumented transport asks to take it over;
- that transport ends it at once for an ordinary answer, and for an event stream
  (``text/event-stream``) when the body is closed: read to the end, closed by the caller
  (``close()``, leaving ``with``, a ``break`` and garbage collection) or broken off (then
  recorded as an error, status ERROR).

A span started anywhere else through the same tracer ends on exit as usual. :func:`failed`
lets a stream that rejects what it read (an error event, a malformed chunk, a limit) mark
the HTTP span as failed before it closes the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, cast

import httpx
from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from appsdk import semconv

__all__ = [
    "PROVIDER",
    "AsyncSpanEndingTransport",
    "SpanEndingTransport",
    "end",
    "failed",
    "instrument",
]

_EXTENSION = "appsdk.http_span"
_EVENT_STREAM = "text/event-stream"


class _Taker:
    """Set around one exchange by the transport: the span the instrumentation starts in it."""

    __slots__ = ("span",)

    def __init__(self) -> None:
        self.span: trace_api.Span | None = None


_TAKER: ContextVar[_Taker | None] = ContextVar("appsdk_http_span_taker", default=None)


class _SpanEnd:
    """Ends one HTTP client span once: at the end of the body, on close, or on a failure."""

    __slots__ = ("ended", "span")

    def __init__(self, span: trace_api.Span) -> None:
        self.span = span
        self.ended = False

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.span.end()

    def fail(self, error: BaseException) -> None:
        if self.ended:
            return
        span = self.span
        if span.is_recording():
            # As the instrumentation records a failed exchange (its ``use_span``), plus the
            # error type that the generation carries too.
            span.record_exception(error)
            span.set_attribute(semconv.ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.end()


class _DeferringTracer(trace_api.Tracer):
    """The instrumentation's tracer: hands the exchange's span to a waiting transport."""

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer = tracer

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace_api.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        return self._tracer.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace_api.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:
        taker = _TAKER.get()
        if taker is None or taker.span is not None:
            return self._tracer.start_as_current_span(
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
                end_on_exit,
            )
        # What the SDK's start_as_current_span does, but the transport ends the span.
        span = self._tracer.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        taker.span = span
        return trace_api.use_span(
            span,
            end_on_exit=False,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        )


class _DeferringTracerProvider(trace_api.TracerProvider):
    """The global provider's tracers (resolved when asked, as ``get_tracer`` does), wrapped."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace_api.Tracer:
        tracer = trace_api.get_tracer_provider().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        return _DeferringTracer(tracer)


PROVIDER = _DeferringTracerProvider()
"""The ``tracer_provider`` given to ``HTTPXClientInstrumentor.instrument_client``."""


def _take(taker: _Taker, response: httpx.Response, sync: bool) -> None:
    """End the exchange's span now, or hand it to the response's stream."""
    span = taker.span
    if span is None:  # not traced (an excluded URL, instrumentation suppressed)
        return
    if response.is_closed or _EVENT_STREAM not in response.headers.get("content-type", ""):
        span.end()  # as the instrumentation ends it: when the answer's headers are in
        return
    handle = _SpanEnd(span)
    response.extensions[_EXTENSION] = handle
    if sync:
        response.stream = _SyncSpanStream(cast(httpx.SyncByteStream, response.stream), handle)
    else:
        response.stream = _AsyncSpanStream(cast(httpx.AsyncByteStream, response.stream), handle)


class _SyncSpanStream(httpx.SyncByteStream):
    __slots__ = ("_handle", "_stream")

    def __init__(self, stream: httpx.SyncByteStream, handle: _SpanEnd) -> None:
        self._stream = stream
        self._handle = handle

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as error:
            self._handle.fail(error)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._handle.end()

    def __del__(self) -> None:
        # A response dropped unclosed: the span ends when it is collected.
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.end()


class _AsyncSpanStream(httpx.AsyncByteStream):
    __slots__ = ("_handle", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, handle: _SpanEnd) -> None:
        self._stream = stream
        self._handle = handle

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as error:
            self._handle.fail(error)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._handle.end()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.end()


class SpanEndingTransport(httpx.BaseTransport):
    """Around an instrumented transport: ends its span when the answer's body is done."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        taker = _Taker()
        token = _TAKER.set(taker)
        try:
            response = self.transport.handle_request(request)
        except BaseException:
            if taker.span is not None:
                taker.span.end()  # the instrumentation recorded the error
            raise
        finally:
            _TAKER.reset(token)
        _take(taker, response, sync=True)
        return response

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SpanEndingTransport:
        self.transport.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.transport.__exit__(exc_type, exc_value, traceback)


class AsyncSpanEndingTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`SpanEndingTransport`."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        taker = _Taker()
        token = _TAKER.set(taker)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException:
            if taker.span is not None:
                taker.span.end()
            raise
        finally:
            _TAKER.reset(token)
        _take(taker, response, sync=False)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncSpanEndingTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.transport.__aexit__(exc_type, exc_value, traceback)


def instrument(client: httpx.Client | httpx.AsyncClient) -> None:
    """Instrument ``client`` with opentelemetry-instrumentation-httpx, streams covered."""
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=PROVIDER)
    internals: Any = client  # httpx keeps its transports in these (as the instrumentation reads)
    wrap: Any = (
        SpanEndingTransport if isinstance(client, httpx.Client) else AsyncSpanEndingTransport
    )
    internals._transport = wrap(internals._transport)
    mounts: Mapping[Any, Any] = internals._mounts
    internals._mounts = {
        pattern: wrap(transport) if transport is not None else None
        for pattern, transport in mounts.items()
    }


def failed(response: httpx.Response, error: BaseException) -> None:
    """Record ``error`` on the response's HTTP span and end it (a stream that broke off)."""
    handle: _SpanEnd | None = response.extensions.get(_EXTENSION)
    if handle is not None:
        handle.fail(error)


def end(response: httpx.Response) -> None:
    """End the response's HTTP span now (a stream given up without closing its response)."""
    handle: _SpanEnd | None = response.extensions.get(_EXTENSION)
    if handle is not None:
        handle.end()
