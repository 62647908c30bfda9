"""``AsyncLLMDClient``: the asyncio twin of :class:`~appsdk.llmd.client.LLMDClient`.

Only sending and reading differ from the sync client; everything else is in
:class:`~appsdk.llmd.base.LLMDBase`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

import httpx
from opentelemetry import context as context_api
from typing_extensions import Unpack

from appsdk.llmd import headers as h
from appsdk.llmd.base import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_DEADLINE_S,
    DEFAULT_TIMEOUT,
    LLMDBase,
    already_read,
    client_arguments,
)
from appsdk.llmd.body import LimitExceeded, UnsupportedEncoding
from appsdk.llmd.calls import Call
from appsdk.llmd.errors import (
    LLMDError,
    ResponseError,
    error_from_exception,
    error_from_response,
    error_from_stream_body,
)
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    CreateEmbeddingResponse,
    Model,
    ModelList,
)
from appsdk.llmd.openai_compat import AsyncNamespaces
from appsdk.llmd.params import (
    ChatParams,
    CompletionParams,
    EmbeddingInput,
    EmbeddingParams,
    ListOptions,
)
from appsdk.llmd.raw import RawResponse
from appsdk.llmd.stream import AsyncStream
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

__all__ = ["AsyncLLMDClient"]


class AsyncLLMDClient(httpx.AsyncClient, LLMDBase):
    """The asyncio twin of :class:`~appsdk.llmd.client.LLMDClient`: same arguments, awaitable
    calls, ``async for`` streams (openai's ``AsyncOpenAI`` shapes).

    Example:
        >>> async with AsyncLLMDClient(base_url=url) as client:  # doctest: +SKIP
        ...     async with await client.chat(model="m", messages=msgs, stream=True) as stream:
        ...         async for chunk in stream: ...
    """

    def __init__(
        self,
        base_url: str | httpx.URL | None = None,
        *,
        api_key: str | None = None,
        options: h.LLMDOptions | None = None,
        session_affinity: bool = False,
        retry: h.RetryPolicy | None = None,
        max_retries: int | None = None,
        policy: Policy | None = None,
        prices: PriceTable | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        stream_deadline_s: float | None = DEFAULT_STREAM_DEADLINE_S,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        **httpx_options: Any,
    ) -> None:
        super().__init__(
            **client_arguments(
                base_url=base_url,
                api_key=api_key,
                timeout=timeout,
                default_headers=default_headers,
                default_query=default_query,
                httpx_options=httpx_options,
            )
        )
        self._setup(
            options=options,
            retry=retry,
            max_retries=max_retries,
            policy=policy,
            prices=prices,
            session_affinity=session_affinity,
            max_response_bytes=max_response_bytes,
            stream_deadline_s=stream_deadline_s,
        )

    def _bind_namespaces(self) -> None:
        namespaces = AsyncNamespaces(self)
        self.chat = namespaces.chat
        """``client.chat(...)`` and ``client.chat.completions.create(...)``."""
        self.completions = namespaces.completions
        self.embeddings = namespaces.embeddings
        self.models = namespaces.models
        self.with_raw_response = namespaces.with_raw_response

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._stamp(request)
        filtered = self._baggage_context()
        token = context_api.attach(filtered) if filtered is not None else None
        try:
            response = await super().send(request, **kwargs)
        finally:
            if token is not None:
                context_api.detach(token)
        self._remember_session(response)
        return response

    # -- typed calls ------------------------------------------------------------------------

    @overload
    async def complete_chat(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> ChatCompletion: ...
    @overload
    async def complete_chat(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> AsyncStream[ChatCompletionChunk]: ...
    @overload
    async def complete_chat(
        self, *, stream: bool, **params: Unpack[ChatParams]
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...
    async def complete_chat(
        self, *, stream: bool = False, **params: Any
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """A chat completion (``stream=True``: an :class:`AsyncStream` of chunks)."""
        result: ChatCompletion | AsyncStream[ChatCompletionChunk] = await self._invoke(
            "chat", stream, params
        )
        return result

    @overload
    async def complete(
        self, *, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> Completion: ...
    @overload
    async def complete(
        self, *, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> AsyncStream[CompletionChunk]: ...
    @overload
    async def complete(
        self, *, stream: bool, **params: Unpack[CompletionParams]
    ) -> Completion | AsyncStream[CompletionChunk]: ...
    async def complete(
        self, *, stream: bool = False, **params: Any
    ) -> Completion | AsyncStream[CompletionChunk]:
        """A text completion; ``prompt`` is the text, or a Langfuse/local prompt object."""
        result: Completion | AsyncStream[CompletionChunk] = await self._invoke(
            "text_completion", stream, params
        )
        return result

    async def embed(
        self, *, model: str, input: EmbeddingInput, **params: Unpack[EmbeddingParams]
    ) -> CreateEmbeddingResponse:
        """Embeddings of one text or several."""
        result: CreateEmbeddingResponse = await self._invoke(
            "embeddings", False, {"model": model, "input": input, **params}
        )
        return result

    async def list_models(self, **options: Unpack[ListOptions]) -> ModelList:
        """The models (and LoRA adapters) the gateway serves."""
        request = self._get_request("/v1/models", dict(options))
        response, body = await self._get(request)
        return self._parse_models(request.headers[h.REQUEST_ID], response, body)

    async def retrieve_model(self, model: str, **options: Unpack[ListOptions]) -> Model:
        """One model by id; a gateway without ``/v1/models/{id}`` (vLLM) is asked for the list.

        Raises:
            ModelNotFoundError: the gateway does not serve ``model``.
        """
        request = self._get_request(f"/v1/models/{model}", dict(options))
        try:
            response, body = await self._get(request)
        except LLMDError as error:
            if not self._needs_listing(error):
                raise
            return self._find_model(model, await self.list_models(**options), error)
        return self._parse_model(request.headers[h.REQUEST_ID], response, body)

    # -- I/O --------------------------------------------------------------------------------

    async def _invoke(
        self, operation: str, stream: bool, params: dict[str, Any], raw: bool = False
    ) -> Any:
        timeout = params.pop("timeout", None)
        call = self._prepare(operation, stream, params)
        content = self._encode(call)  # before the generation starts: bad arguments raise here
        generation = call.start_generation(self._prices, self._policy)
        response = await self._send_with_retries(
            call.request_id, lambda: self._build(call, content, timeout), generation
        )
        if call.stream:
            result: Any = await self._open_stream(call, response, generation)
            return RawResponse(response, result) if raw else result
        try:
            body = await self._read(call.request_id, response)
        except LLMDError as error:
            generation.fail(error)
            raise
        return self._answer(call, response, body, generation, raw)

    async def _open_stream(
        self, call: Call, response: httpx.Response, generation: Generation
    ) -> AsyncStream[Any]:
        try:
            if self._is_json(response):
                body = await self._read(call.request_id, response, error_body=True)
                raise error_from_stream_body(
                    response, body.decode(errors="replace"), call.request_id
                )
            return AsyncStream(
                response, call, generation, self._max_response_bytes, self._stream_deadline_s
            )
        except UnsupportedEncoding as exc:
            await response.aclose()
            error: LLMDError = ResponseError(
                f"the gateway answered with Content-Encoding {exc}, which was not asked for",
                request_id=call.request_id,
            )
        except LLMDError as exc:
            error = exc
        generation.fail(error)
        raise error

    async def _read(
        self, request_id: str, response: httpx.Response, *, error_body: bool = False
    ) -> bytes:
        """The decoded body within the limit; the connection goes back to the pool either way."""
        try:
            if self._whole(response, error_body):
                return await response.aread()
            reader = self._reader(request_id, response, error_body)
            if already_read(response):
                reader.add(response.content)
                return bytes(reader.body)
            async for chunk in response.aiter_raw():
                if reader.add(chunk):
                    break
            return bytes(reader.body)
        except LimitExceeded as exc:
            raise self._too_large(request_id, response, exc.size) from None
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, request_id) from exc
        finally:
            await response.aclose()

    async def _get(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        request_id = request.headers[h.REQUEST_ID]
        response = await self._send_with_retries(request_id, lambda: request, None)
        return response, await self._read(request_id, response)

    async def _send_with_retries(
        self,
        request_id: str,
        build: Callable[[], httpx.Request],
        generation: Generation | None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            request = build()
            if generation is not None:
                generation.activate()
            try:
                response = await self.send(request, stream=True)
                if response.is_success:
                    return response
                body = await self._read(request_id, response, error_body=True)
                error = error_from_response(response, body.decode(errors="replace"), request_id)
            except httpx.HTTPError as exc:
                error = error_from_exception(exc, request_id)
            except LLMDError as exc:  # an error body that could not be read
                error = exc
            finally:
                if generation is not None:
                    generation.deactivate()
            delay = self._retry_delay(attempt, error)
            if delay is None:
                if generation is not None:
                    generation.fail(error)
                raise error
            if generation is not None:
                generation.retrying(attempt, delay, error)
            await asyncio.sleep(delay)
