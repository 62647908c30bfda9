"""``LLMDClient``: an httpx client that speaks llm-d, traces each call, and reads like openai.

It is an ``httpx.Client`` (``client.post(...)`` keeps working, and gets trace context too) with
typed methods. Everything but I/O lives in :class:`~appsdk.llmd.base.LLMDBase`; the asyncio
twin is :class:`~appsdk.llmd.async_client.AsyncLLMDClient` (re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

import httpx
from opentelemetry import context as context_api
from typing_extensions import Unpack

from appsdk.llmd import headers as h
from appsdk.llmd.async_client import AsyncLLMDClient
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
from appsdk.llmd.openai_compat import Namespaces
from appsdk.llmd.params import (
    ChatParams,
    CompletionParams,
    EmbeddingInput,
    EmbeddingParams,
    ListOptions,
)
from appsdk.llmd.raw import RawResponse
from appsdk.llmd.stream import Stream
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

__all__ = ["AsyncLLMDClient", "LLMDClient"]


class LLMDClient(httpx.Client, LLMDBase):
    """A synchronous llm-d client: an ``httpx.Client`` with typed, traced calls.

    It takes openai's constructor arguments too (``base_url`` with or without ``/v1``,
    ``api_key``, ``max_retries``, ``default_headers``, ``default_query``), so code written
    for ``openai.OpenAI`` runs against llm-d unchanged.

    Args:
        base_url: the gateway, e.g. ``http://llm-d-gateway:80`` (default ``OPENAI_BASE_URL``,
            else ``http://127.0.0.1:8000``).
        api_key: sent as ``Authorization: Bearer ...`` (default ``OPENAI_API_KEY``, else none).
        options: llm-d scheduling hints for every call (per-call keywords override).
        session_affinity: echo the gateway's ``x-session-token`` on later requests.
        retry: backoff for connect errors, 429 and 503; ``RetryPolicy(max_attempts=1)``
            turns retries off. ``max_retries=N`` is openai's spelling of ``max_attempts=N+1``.
        policy: overrides the configured policy for this client's content and baggage.
        prices: a :class:`PriceTable` for cost (default: ``APPSDK_PRICES``).
        timeout: seconds or an ``httpx.Timeout``; the read timeout also bounds the time
            between a stream's data events (keep-alive comments do not count).
        max_response_bytes: a larger answer (counted decoded) raises ``ResponseTooLargeError``.
        stream_deadline_s: a stream still running after this long raises ``LLMDTimeoutError``.
        default_headers, default_query: sent with every request.

    Example:
        >>> client = LLMDClient(base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
        >>> client.chat.completions.create(model="llama-3-8b", messages=[...])
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
        namespaces = Namespaces(self)
        self.chat = namespaces.chat
        """``client.chat(...)`` and ``client.chat.completions.create(...)``."""
        self.completions = namespaces.completions
        self.embeddings = namespaces.embeddings
        self.models = namespaces.models
        self.with_raw_response = namespaces.with_raw_response

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        self._stamp(request)
        filtered = self._baggage_context()
        token = context_api.attach(filtered) if filtered is not None else None
        try:
            response = super().send(request, **kwargs)
        finally:
            if token is not None:
                context_api.detach(token)
        self._remember_session(response)
        return response

    # -- typed calls ------------------------------------------------------------------------

    @overload
    def complete_chat(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> ChatCompletion: ...
    @overload
    def complete_chat(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> Stream[ChatCompletionChunk]: ...
    @overload
    def complete_chat(
        self, *, stream: bool, **params: Unpack[ChatParams]
    ) -> ChatCompletion | Stream[ChatCompletionChunk]: ...
    def complete_chat(
        self, *, stream: bool = False, **params: Any
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """A chat completion (``stream=True``: a :class:`Stream` of chunks)."""
        result: ChatCompletion | Stream[ChatCompletionChunk] = self._invoke("chat", stream, params)
        return result

    @overload
    def complete(
        self, *, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> Completion: ...
    @overload
    def complete(
        self, *, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> Stream[CompletionChunk]: ...
    @overload
    def complete(
        self, *, stream: bool, **params: Unpack[CompletionParams]
    ) -> Completion | Stream[CompletionChunk]: ...
    def complete(
        self, *, stream: bool = False, **params: Any
    ) -> Completion | Stream[CompletionChunk]:
        """A text completion; ``prompt`` is the text, or a Langfuse/local prompt object."""
        result: Completion | Stream[CompletionChunk] = self._invoke(
            "text_completion", stream, params
        )
        return result

    def embed(
        self, *, model: str, input: EmbeddingInput, **params: Unpack[EmbeddingParams]
    ) -> CreateEmbeddingResponse:
        """Embeddings of one text or several."""
        result: CreateEmbeddingResponse = self._invoke(
            "embeddings", False, {"model": model, "input": input, **params}
        )
        return result

    def list_models(self, **options: Unpack[ListOptions]) -> ModelList:
        """The models (and LoRA adapters) the gateway serves."""
        request = self._get_request("/v1/models", dict(options))
        response, body = self._get(request)
        return self._parse_models(request.headers[h.REQUEST_ID], response, body)

    def retrieve_model(self, model: str, **options: Unpack[ListOptions]) -> Model:
        """One model by id; a gateway without ``/v1/models/{id}`` (vLLM) is asked for the list.

        Raises:
            ModelNotFoundError: the gateway does not serve ``model``.
        """
        request = self._get_request(f"/v1/models/{model}", dict(options))
        try:
            response, body = self._get(request)
        except LLMDError as error:
            if not self._needs_listing(error):
                raise
            return self._find_model(model, self.list_models(**options), error)
        return self._parse_model(request.headers[h.REQUEST_ID], response, body)

    # -- I/O --------------------------------------------------------------------------------

    def _invoke(
        self, operation: str, stream: bool, params: dict[str, Any], raw: bool = False
    ) -> Any:
        timeout = params.pop("timeout", None)
        call = self._prepare(operation, stream, params)
        content = self._encode(call)  # before the generation starts: bad arguments raise here
        generation = call.start_generation(self._prices, self._policy)
        response = self._send_with_retries(
            call.request_id, lambda: self._build(call, content, timeout), generation
        )
        if call.stream:
            result: Any = self._open_stream(call, response, generation)
            return RawResponse(response, result) if raw else result
        try:
            body = self._read(call.request_id, response)
        except LLMDError as error:
            generation.fail(error)
            raise
        return self._answer(call, response, body, generation, raw)

    def _open_stream(
        self, call: Call, response: httpx.Response, generation: Generation
    ) -> Stream[Any]:
        try:
            if self._is_json(response):
                body = self._read(call.request_id, response, error_body=True)
                raise error_from_stream_body(
                    response, body.decode(errors="replace"), call.request_id
                )
            return Stream(
                response, call, generation, self._max_response_bytes, self._stream_deadline_s
            )
        except UnsupportedEncoding as exc:
            response.close()
            error: LLMDError = ResponseError(
                f"the gateway answered with Content-Encoding {exc}, which was not asked for",
                request_id=call.request_id,
            )
        except LLMDError as exc:
            error = exc
        generation.fail(error)
        raise error

    def _read(
        self, request_id: str, response: httpx.Response, *, error_body: bool = False
    ) -> bytes:
        """The decoded body within the limit; the connection goes back to the pool either way."""
        try:
            if self._whole(response, error_body):
                return response.read()
            reader = self._reader(request_id, response, error_body)
            chunks = (response.content,) if already_read(response) else response.iter_raw()
            for chunk in chunks:
                if reader.add(chunk):
                    break
            return bytes(reader.body)
        except LimitExceeded as exc:
            raise self._too_large(request_id, response, exc.size) from None
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, request_id) from exc
        finally:
            response.close()

    def _get(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        request_id = request.headers[h.REQUEST_ID]
        response = self._send_with_retries(request_id, lambda: request, None)
        return response, self._read(request_id, response)

    def _send_with_retries(
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
                response = self.send(request, stream=True)
                if response.is_success:
                    return response
                body = self._read(request_id, response, error_body=True)
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
            time.sleep(delay)
