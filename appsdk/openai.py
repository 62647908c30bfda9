"""Tracing for apps that keep the ``openai`` SDK, pointed at llm-d (as ``langfuse.openai``).

Swap the import, or instrument a client made elsewhere::

    from appsdk.openai import OpenAI          # instead of: from openai import OpenAI
    client = OpenAI(base_url="http://llm-d-gateway/v1", api_key=key)

    client = appsdk.openai.instrument_openai(openai.OpenAI(...))

Every ``chat.completions.create``, ``completions.create`` and ``embeddings.create`` is then
the same generation an :class:`~appsdk.LLMDClient` call is (model, usage, time to first token,
cost, prompt link, tools, content under the policy), and the request carries ``traceparent``
(the generation as parent, sampled flag set), ``x-request-id`` and the llm-d headers, so the
gateway's and vLLM's spans land in the same trace. Baggage leaves only for the policy's
allow-list. Copies made by ``with_options()`` are traced the same way; instrumenting twice
changes nothing (no double spans). Streams ask for usage and hide the extra chunk from the
loop, as appsdk's own client does.

Only this module imports ``openai`` (the ``appsdk[openai]`` extra).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import context as context_api
from opentelemetry import propagate
from opentelemetry import trace as trace_api

from appsdk import runtime as _runtime
from appsdk.llmd import headers as h
from appsdk.llmd.base import filtered_baggage
from appsdk.llmd.calls import Call, build_call, record_answer
from appsdk.llmd.generation import Generation
from appsdk.llmd.output import StreamAccumulator
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

try:
    import openai
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("appsdk.openai traces the openai SDK: pip install 'appsdk[openai]'") from exc

__all__ = ["AsyncOpenAI", "OpenAI", "instrument_openai"]

_log = logging.getLogger("appsdk")
Client = TypeVar("Client", bound="openai.OpenAI | openai.AsyncOpenAI")
_TRACING = "_appsdk_tracing"
_CONTENT = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}
# openai's own keywords: not part of the body the generation records.
_TRANSPORT = ("extra_headers", "extra_query", "extra_body", "timeout")
_RAW_RESPONSE = "X-Stainless-Raw-Response"


class _Tracing:
    """One instrumented client's settings (shared with the copies it makes)."""

    def __init__(
        self, policy: Policy | None, prices: PriceTable | None, options: h.LLMDOptions | None
    ) -> None:
        self.policy = policy
        self.prices = prices if prices is not None else PriceTable.from_env()
        self.options = options or h.LLMDOptions()

    def prepare(self, operation: str, kwargs: dict[str, Any]) -> Call | None:
        """The call as appsdk records it, or None when the arguments make no request (openai
        then raises its own error, untouched)."""
        field = _CONTENT[operation]
        content = kwargs.get(field)
        if isinstance(content, Iterator):
            # A generator of messages can be read once: keep a list for openai and for us.
            kwargs[field] = list(content)
        params = {k: v for k, v in kwargs.items() if k not in _TRANSPORT}
        stream = params.pop("stream", False) is True
        try:
            return build_call(
                operation,
                model=params.pop("model", None),
                content=params.pop(field, None),
                stream=stream,
                prompt=None,
                variables=None,
                request_id=_header(kwargs, h.REQUEST_ID),
                options=self.options,
                extra_headers=None,
                extra_body=kwargs.get("extra_body"),
                params=params,
            )
        except (TypeError, ValueError):
            return None

    def allowed_baggage(self) -> tuple[str, ...]:
        if self.policy is not None:
            return self.policy.baggage_allow
        pipeline = _runtime.current()
        return pipeline.policy.baggage_allow if pipeline is not None else ()

    def wire_headers(self, call: Call, generation: Generation) -> dict[str, str]:
        """``x-request-id``, the llm-d headers and the trace context for the request."""
        wire = {k: v for k, v in call.headers.items() if k != "content-type"}
        ctx = filtered_baggage(self.allowed_baggage) or context_api.get_current()
        if generation.observation is not None:
            # The generation is the parent of the gateway's span, as with appsdk's client.
            ctx = trace_api.set_span_in_context(generation.span, ctx)
        propagate.inject(wire, context=ctx)
        return wire


def _header(kwargs: Mapping[str, Any], name: str) -> str | None:
    given = kwargs.get("extra_headers") or {}
    for key, value in given.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return None


def _before(tracing: _Tracing, call: Call, kwargs: dict[str, Any]) -> Generation:
    """Start the generation and put what the wire needs into ``kwargs``."""
    if call.auto_usage and _header(kwargs, _RAW_RESPONSE.lower()) is None:
        # Usage for the generation; the wrapped stream hides the extra chunk. A raw response's
        # stream is the caller's to read, unwrapped: it gets exactly what it asked for.
        kwargs["stream_options"] = call.body["stream_options"]
    generation = call.start_generation(tracing.prices, tracing.policy)
    user_headers = dict(kwargs.get("extra_headers") or {})
    given = {k.lower() for k in user_headers}
    wire = tracing.wire_headers(call, generation)
    kwargs["extra_headers"] = {
        **{k: v for k, v in wire.items() if k.lower() not in given},
        **user_headers,
    }
    return generation


def _after(call: Call, generation: Generation, result: Any, kwargs: Mapping[str, Any]) -> Any:
    """Record a finished call; a stream is returned wrapped, recorded as it is read.

    Tracing never breaks the call: a result it cannot read is returned as it came."""
    try:
        return _record(call, generation, result, kwargs)
    except Exception:
        _log.debug("appsdk: could not record an openai call", exc_info=True)
        return result


def _record(call: Call, generation: Generation, result: Any, kwargs: Mapping[str, Any]) -> Any:
    raw_mode = _header(kwargs, _RAW_RESPONSE.lower())
    if raw_mode is not None:
        # with_raw_response: parse() is cached, so reading it here changes nothing for the
        # caller; a stream or a streamed response is not read here (that would consume it).
        if raw_mode == "true" and not call.stream:
            try:
                parsed = result.parse()
            except Exception as error:  # the caller's parse() raises it; tracing does not
                generation.fail(error)
                return result
            record_answer(generation, call.operation, parsed)
        else:
            generation.succeed(
                response_id=None, response_model=None, finish_reasons=[], usage=None, output=None
            )
        return result
    if isinstance(result, openai.Stream):
        return TracedStream(result, call, generation)
    if isinstance(result, openai.AsyncStream):
        return AsyncTracedStream(result, call, generation)
    record_answer(generation, call.operation, result)
    return result


def _traced_sync(create: Callable[..., Any], operation: str, client: Any) -> Callable[..., Any]:
    @functools.wraps(create)
    def traced(*args: Any, **kwargs: Any) -> Any:
        tracing: _Tracing = getattr(client, _TRACING)
        call = None if args else tracing.prepare(operation, kwargs)
        if call is None:
            return create(*args, **kwargs)
        generation = _before(tracing, call, kwargs)
        generation.activate()
        try:
            result = create(**kwargs)
        except BaseException as error:
            generation.fail(error)
            raise
        finally:
            generation.deactivate()
        return _after(call, generation, result, kwargs)

    return traced


def _traced_async(create: Callable[..., Any], operation: str, client: Any) -> Callable[..., Any]:
    @functools.wraps(create)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracing: _Tracing = getattr(client, _TRACING)
        call = None if args else tracing.prepare(operation, kwargs)
        if call is None:
            return await create(*args, **kwargs)
        generation = _before(tracing, call, kwargs)
        generation.activate()
        try:
            result = await create(**kwargs)
        except BaseException as error:
            generation.fail(error)
            raise
        finally:
            generation.deactivate()
        return _after(call, generation, result, kwargs)

    return traced


class _StreamRecorder:
    """Feeds the chunks of an openai stream to the generation; ends it once."""

    def __init__(self, call: Call, generation: Generation) -> None:
        self.call = call
        self.generation = generation
        self.received = StreamAccumulator(call.operation == "chat")
        self.finished = False

    def take(self, chunk: Any) -> bool:
        """Record ``chunk``; True when the caller should see it."""
        try:
            if self.received.add(chunk):
                self.generation.first_chunk()
        except Exception:  # a chunk tracing cannot read is still the caller's
            _log.debug("appsdk: could not record an openai stream chunk", exc_info=True)
            return True
        hidden = self.call.auto_usage and not chunk.choices and chunk.usage is not None
        return not hidden

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            received = self.received
            self.generation.succeed(
                response_id=received.response_id,
                response_model=received.response_model,
                finish_reasons=received.finish_reasons,
                usage=received.usage,
                output=received.output(),
            )

    def fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            received = self.received
            self.generation.response_model = received.response_model
            output = received.output() if received.has_output else None
            self.generation.fail(error, output=output)

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            received = self.received
            self.generation.response_model = received.response_model
            self.generation.cancelled(
                received_chunks=received.chunks, output=received.output(), usage=received.usage
            )


class TracedStream:
    """An ``openai.Stream`` that records what it yields; everything else is the stream's."""

    def __init__(self, stream: Any, call: Call, generation: Generation) -> None:
        self._stream = stream
        self._iterator: Iterator[Any] = iter(stream)
        self._recorder = _StreamRecorder(call, generation)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        recorder = self._recorder
        while True:
            try:
                chunk = next(self._iterator)
            except StopIteration:
                recorder.finish()
                raise
            except BaseException as error:
                recorder.fail(error)
                raise
            if recorder.take(chunk):
                return chunk

    def close(self) -> None:
        self._recorder.cancel()
        self._stream.close()

    def __enter__(self) -> TracedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        recorder = getattr(self, "_recorder", None)
        if recorder is not None:
            recorder.cancel()


class AsyncTracedStream:
    """An ``openai.AsyncStream`` that records what it yields."""

    def __init__(self, stream: Any, call: Call, generation: Generation) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[Any] = stream.__aiter__()
        self._recorder = _StreamRecorder(call, generation)

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        recorder = self._recorder
        while True:
            try:
                chunk = await self._iterator.__anext__()
            except StopAsyncIteration:
                recorder.finish()
                raise
            except BaseException as error:
                recorder.fail(error)
                raise
            if recorder.take(chunk):
                return chunk

    async def close(self) -> None:
        self._recorder.cancel()
        await self._stream.close()

    async def __aenter__(self) -> AsyncTracedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __del__(self) -> None:
        recorder = getattr(self, "_recorder", None)
        if recorder is not None:
            recorder.cancel()


def _attach(client: Any, tracing: _Tracing) -> None:
    """Wrap the client's call methods once; later calls only swap the settings."""
    if getattr(client, _TRACING, None) is not None:
        setattr(client, _TRACING, tracing)
        return
    setattr(client, _TRACING, tracing)
    traced = _traced_async if isinstance(client, openai.AsyncOpenAI) else _traced_sync
    for resource, operation in (
        (client.chat.completions, "chat"),
        (client.completions, "text_completion"),
        (client.embeddings, "embeddings"),
    ):
        resource.create = traced(resource.create, operation, client)
    copy = client.copy

    @functools.wraps(copy)
    def traced_copy(*args: Any, **kwargs: Any) -> Any:
        made = copy(*args, **kwargs)
        _attach(made, tracing)
        return made

    # Instance attributes shadow the class's methods: copies are traced with the same settings.
    client.copy = traced_copy
    client.with_options = traced_copy


def instrument_openai(
    client: Client,
    *,
    policy: Policy | None = None,
    prices: PriceTable | None = None,
    options: h.LLMDOptions | None = None,
) -> Client:
    """Trace an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` client; returns the same client.

    Args:
        policy: overrides the configured policy for this client's content and baggage.
        prices: a :class:`~appsdk.PriceTable` for cost (default: ``APPSDK_PRICES``).
        options: llm-d scheduling hints sent as headers with every call.

    Example:
        >>> client = instrument_openai(openai.OpenAI(base_url=url, api_key=key))  # doctest: +SKIP
    """
    _attach(client, _Tracing(policy, prices, options))
    return client


class OpenAI(openai.OpenAI):
    """``openai.OpenAI``, traced: takes openai's arguments plus ``policy``, ``prices`` and
    ``options`` (see :func:`instrument_openai`).

    Example:
        >>> client = OpenAI(base_url="http://llm-d-gateway/v1", api_key=key)  # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        policy: Policy | None = None,
        prices: PriceTable | None = None,
        options: h.LLMDOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        instrument_openai(self, policy=policy, prices=prices, options=options)


class AsyncOpenAI(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI``, traced (see :class:`OpenAI`)."""

    def __init__(
        self,
        *args: Any,
        policy: Policy | None = None,
        prices: PriceTable | None = None,
        options: h.LLMDOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        instrument_openai(self, policy=policy, prices=prices, options=options)
