"""``LLMDClient`` and ``AsyncLLMDClient``: httpx clients that speak llm-d and trace each call.

They are httpx clients (``client.post(...)`` keeps working, and gets trace context too) with
typed methods. Everything but I/O lives in :class:`_LLMDBase`; only sending is mirrored.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
from opentelemetry import baggage
from opentelemetry import context as context_api
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from appsdk import pipeline as _pipeline
from appsdk.llmd import headers as h
from appsdk.llmd.calls import Call, build_call
from appsdk.llmd.errors import (
    LLMDError,
    ResponseError,
    ResponseTooLargeError,
    error_from_exception,
    error_from_response,
)
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import ChatCompletion, Completion, EmbeddingResponse, ModelList
from appsdk.llmd.openai_compat import Chat, Completions, Embeddings, Models, Namespaces
from appsdk.llmd.stream import AsyncStream, Stream
from appsdk.policy import Policy
from appsdk.pricing import PriceTable

__all__ = ["AsyncLLMDClient", "LLMDClient"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_ERROR_BODY_BYTES = 64 * 1024


class _LLMDBase:
    """Request building, headers, retries and recording: everything except I/O."""

    _options: h.LLMDOptions
    _retry: h.RetryPolicy
    _policy: Policy | None
    _prices: PriceTable | None
    _session_affinity: bool
    _session_token: str | None
    _max_response_bytes: int
    _option_headers: tuple[tuple[str, str], ...]
    chat: Chat
    """``client.chat(...)`` and ``client.chat.completions.create(...)``."""
    completions: Completions
    embeddings: Embeddings
    models: Models

    def _setup(
        self,
        options: h.LLMDOptions | None,
        retry: h.RetryPolicy | None,
        policy: Policy | None,
        prices: PriceTable | None,
        session_affinity: bool,
        max_response_bytes: int,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._options = options or h.LLMDOptions()
        self._option_headers = tuple(self._options.headers().items())
        self._retry = retry if retry is not None else h.RetryPolicy()
        self._policy = policy
        self._prices = prices if prices is not None else PriceTable.from_env()
        self._session_affinity = session_affinity
        self._session_token = None
        HTTPXClientInstrumentor.instrument_client(self)  # type: ignore[arg-type]
        namespaces = Namespaces(self)
        self.chat = namespaces.chat
        self.completions = namespaces.completions
        self.embeddings = namespaces.embeddings
        self.models = namespaces.models

    @property
    def session_token(self) -> str | None:
        """The gateway's session token, echoed back when session affinity is on."""
        return self._session_token

    def _stamp(self, request: httpx.Request) -> None:
        """Headers every request gets, typed call or plain ``client.post``."""
        if h.REQUEST_ID not in request.headers:
            request.headers[h.REQUEST_ID] = os.urandom(16).hex()
        for name, value in self._option_headers:
            request.headers.setdefault(name, value)
        if (
            self._session_affinity
            and self._session_token
            and h.SESSION_TOKEN not in request.headers
        ):
            request.headers[h.SESSION_TOKEN] = self._session_token

    def _remember_session(self, response: httpx.Response) -> None:
        token = response.headers.get(h.SESSION_TOKEN)
        if self._session_affinity and token:
            self._session_token = token

    def _baggage_context(self) -> context_api.Context | None:
        """The current context with baggage cut down to the policy's allow-list, or None when
        there is nothing to cut.

        The httpx instrumentation injects the whole baggage through the global propagator;
        user and session ids must not reach the infrastructure unless the policy says so.
        """
        ctx = context_api.get_current()
        entries = baggage.get_all(ctx)
        if not entries:
            return None
        allowed = self._allowed_baggage()
        changed = False
        for key in entries:
            if key not in allowed:
                ctx = baggage.remove_baggage(key, ctx)
                changed = True
        return ctx if changed else None

    def _allowed_baggage(self) -> tuple[str, ...]:
        if self._policy is not None:
            return self._policy.baggage_allow
        pipeline = _pipeline.current()
        return pipeline.policy.baggage_allow if pipeline is not None else ()

    def _call(
        self,
        operation: str,
        *,
        model: str | None,
        content: Any,
        stream: bool = False,
        prompt: Any = None,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        params: dict[str, Any],
    ) -> Call:
        params.pop("timeout", None)
        return build_call(
            operation,
            model=model,
            content=content,
            stream=stream,
            prompt=prompt,
            variables=variables,
            request_id=request_id,
            options=self._options,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )

    def _retry_delay(self, attempt: int, error: LLMDError) -> float | None:
        if not error.retryable:
            return None
        return self._retry.delay(attempt, getattr(error, "retry_after", None))

    def _too_large(self, call: Call, response: httpx.Response, size: int) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the answer is larger than max_response_bytes={self._max_response_bytes} "
            f"({size} bytes read); raise the limit if such answers are expected",
            status=response.status_code,
            request_id=call.request_id,
        )

    def _limit(self, error_body: bool) -> int:
        return _ERROR_BODY_BYTES if error_body else self._max_response_bytes

    def _read_whole(self, call: Call, response: httpx.Response, error_body: bool) -> bool:
        """True when the declared size allows one read; an answer declared too large raises."""
        declared = response.headers.get("content-length", "")
        if not declared.isdigit():
            return False
        if int(declared) <= self._limit(error_body):
            return True
        if not error_body:
            raise self._too_large(call, response, int(declared))
        return False

    def _take(
        self, call: Call, response: httpx.Response, body: bytearray, chunk: bytes, error_body: bool
    ) -> bool:
        """Add ``chunk``; True to stop reading. Past the limit an answer raises, while an error
        body is cut (its start says enough)."""
        body.extend(chunk)
        if len(body) <= self._limit(error_body):
            return False
        if error_body:
            return True
        raise self._too_large(call, response, len(body))

    @staticmethod
    def _model_list(response: httpx.Response) -> ModelList:
        if not response.is_success:
            raise error_from_response(response, response.text, response.headers.get(h.REQUEST_ID))
        return ModelList.model_validate(response.json())

    @staticmethod
    def _decode(call: Call, response: httpx.Response, body: bytes) -> Any:
        try:
            return call.parse_json(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ResponseError(
                "the gateway's answer is not JSON",
                status=response.status_code,
                request_id=call.request_id,
            ) from None


class LLMDClient(httpx.Client, _LLMDBase):
    """A synchronous llm-d client: an ``httpx.Client`` with typed, traced calls.

    Args:
        base_url: the gateway, e.g. ``http://llm-d-gateway:80``.
        options: llm-d scheduling hints for every call (per-call keywords override).
        session_affinity: echo the gateway's ``x-session-token`` on later requests.
        retry: backoff for connect errors, 429 and 503; ``RetryPolicy(max_attempts=1)``
            turns retries off.
        policy: overrides the configured policy for this client's content and baggage.
        prices: a :class:`PriceTable` for cost (default: ``APPSDK_PRICES``).
        max_response_bytes: a larger answer raises ``ResponseTooLargeError`` unread.

    Example:
        >>> client = LLMDClient(base_url="http://127.0.0.1:8000")  # doctest: +SKIP
        >>> client.chat(model="llama-3-8b", messages=[{"role": "user", "content": "hi"}])
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        options: h.LLMDOptions | None = None,
        session_affinity: bool = False,
        retry: h.RetryPolicy | None = None,
        policy: Policy | None = None,
        prices: PriceTable | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        **httpx_options: Any,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, **httpx_options)
        self._setup(options, retry, policy, prices, session_affinity, max_response_bytes)

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

    def _run(self, call: Call, timeout: Any) -> Any:
        generation = call.start_generation(self._prices, self._policy)
        response = self._send_with_retries(call, generation, timeout)
        if call.stream:
            return Stream(response, call, generation, self._max_response_bytes)
        try:
            body = self._read(call, response)
            result = self._decode(call, response, body)
        except LLMDError as error:
            generation.fail(error)
            raise
        call.record(generation, result)
        return result

    def _read(self, call: Call, response: httpx.Response, *, error_body: bool = False) -> bytes:
        """The body within the limit; the connection goes back to the pool either way."""
        try:
            if self._read_whole(call, response, error_body):
                return response.read()
            body = bytearray()
            for chunk in response.iter_bytes():
                if self._take(call, response, body, chunk, error_body):
                    break
            return bytes(body)
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, call.request_id) from exc
        finally:
            response.close()

    def _send_with_retries(
        self, call: Call, generation: Generation, timeout: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            request = self.build_request(
                "POST",
                call.path,
                json=call.body,
                headers=call.headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
            generation.activate()
            try:
                response = self.send(request, stream=True)
                if response.is_success:
                    return response
                body = self._read(call, response, error_body=True).decode(errors="replace")
                error = error_from_response(response, body, call.request_id)
            except httpx.HTTPError as exc:
                error = error_from_exception(exc, call.request_id)
            finally:
                generation.deactivate()
            delay = self._retry_delay(attempt, error)
            if delay is None:
                generation.fail(error)
                raise error
            generation.retrying(attempt, delay, error)
            time.sleep(delay)

    def complete_chat(
        self,
        *,
        model: str | None = None,
        messages: Any = None,
        stream: bool = False,
        prompt: Any = None,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> ChatCompletion | Stream:
        """A chat completion (``stream=True``: a :class:`Stream` of chunks)."""
        call = self._call(
            "chat",
            model=model,
            content=messages,
            stream=stream,
            prompt=prompt,
            variables=variables,
            request_id=request_id,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        result: ChatCompletion | Stream = self._run(call, timeout)
        return result

    def complete(
        self,
        *,
        model: str | None = None,
        prompt: Any = None,
        stream: bool = False,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> Completion | Stream:
        """A text completion; ``prompt`` is the text, or a Langfuse/local prompt object."""
        text, prompt_object = (None, prompt) if hasattr(prompt, "compile") else (prompt, None)
        call = self._call(
            "text_completion",
            model=model,
            content=text,
            stream=stream,
            prompt=prompt_object,
            variables=variables,
            request_id=request_id,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        result: Completion | Stream = self._run(call, timeout)
        return result

    def embed(
        self,
        *,
        model: str,
        input: str | list[str],
        request_id: str | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """Embeddings of one text or several."""
        call = self._call(
            "embeddings", model=model, content=input, request_id=request_id, params=params
        )
        result: EmbeddingResponse = self._run(call, timeout)
        return result

    def list_models(self) -> ModelList:
        """The models (and LoRA adapters) the gateway serves."""
        try:
            response = self.get("/v1/models")
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, None) from exc
        return self._model_list(response)


class AsyncLLMDClient(httpx.AsyncClient, _LLMDBase):
    """The asyncio twin of :class:`LLMDClient`: same arguments, awaitable calls.

    Example:
        >>> async with AsyncLLMDClient(base_url=url) as client:  # doctest: +SKIP
        ...     async with await client.chat(model="m", messages=msgs, stream=True) as stream:
        ...         async for chunk in stream: ...
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        options: h.LLMDOptions | None = None,
        session_affinity: bool = False,
        retry: h.RetryPolicy | None = None,
        policy: Policy | None = None,
        prices: PriceTable | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        **httpx_options: Any,
    ) -> None:
        super().__init__(base_url=base_url, timeout=timeout, **httpx_options)
        self._setup(options, retry, policy, prices, session_affinity, max_response_bytes)

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

    async def _run(self, call: Call, timeout: Any) -> Any:
        generation = call.start_generation(self._prices, self._policy)
        response = await self._send_with_retries(call, generation, timeout)
        if call.stream:
            return AsyncStream(response, call, generation, self._max_response_bytes)
        try:
            body = await self._aread(call, response)
            result = self._decode(call, response, body)
        except LLMDError as error:
            generation.fail(error)
            raise
        call.record(generation, result)
        return result

    async def _aread(
        self, call: Call, response: httpx.Response, *, error_body: bool = False
    ) -> bytes:
        """The body within the limit; the connection goes back to the pool either way."""
        try:
            if self._read_whole(call, response, error_body):
                return await response.aread()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                if self._take(call, response, body, chunk, error_body):
                    break
            return bytes(body)
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, call.request_id) from exc
        finally:
            await response.aclose()

    async def _send_with_retries(
        self, call: Call, generation: Generation, timeout: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            request = self.build_request(
                "POST",
                call.path,
                json=call.body,
                headers=call.headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
            generation.activate()
            try:
                response = await self.send(request, stream=True)
                if response.is_success:
                    return response
                raw = await self._aread(call, response, error_body=True)
                error = error_from_response(response, raw.decode(errors="replace"), call.request_id)
            except httpx.HTTPError as exc:
                error = error_from_exception(exc, call.request_id)
            finally:
                generation.deactivate()
            delay = self._retry_delay(attempt, error)
            if delay is None:
                generation.fail(error)
                raise error
            generation.retrying(attempt, delay, error)
            await asyncio.sleep(delay)

    async def complete_chat(
        self,
        *,
        model: str | None = None,
        messages: Any = None,
        stream: bool = False,
        prompt: Any = None,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> ChatCompletion | AsyncStream:
        """A chat completion (``stream=True``: an :class:`AsyncStream` of chunks)."""
        call = self._call(
            "chat",
            model=model,
            content=messages,
            stream=stream,
            prompt=prompt,
            variables=variables,
            request_id=request_id,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        result: ChatCompletion | AsyncStream = await self._run(call, timeout)
        return result

    async def complete(
        self,
        *,
        model: str | None = None,
        prompt: Any = None,
        stream: bool = False,
        variables: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> Completion | AsyncStream:
        """A text completion; ``prompt`` is the text, or a Langfuse/local prompt object."""
        text, prompt_object = (None, prompt) if hasattr(prompt, "compile") else (prompt, None)
        call = self._call(
            "text_completion",
            model=model,
            content=text,
            stream=stream,
            prompt=prompt_object,
            variables=variables,
            request_id=request_id,
            extra_headers=extra_headers,
            extra_body=extra_body,
            params=params,
        )
        result: Completion | AsyncStream = await self._run(call, timeout)
        return result

    async def embed(
        self,
        *,
        model: str,
        input: str | list[str],
        request_id: str | None = None,
        timeout: Any = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """Embeddings of one text or several."""
        call = self._call(
            "embeddings", model=model, content=input, request_id=request_id, params=params
        )
        result: EmbeddingResponse = await self._run(call, timeout)
        return result

    async def list_models(self) -> ModelList:
        """The models (and LoRA adapters) the gateway serves."""
        try:
            response = await self.get("/v1/models")
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, None) from exc
        return self._model_list(response)
