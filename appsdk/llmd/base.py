"""What the sync and async llm-d clients share: everything but I/O.

Construction (openai's arguments next to appsdk's), request building, the headers every
request gets, baggage filtering, retries' timing, bounded body reading and copies made by
``with_options``. :mod:`appsdk.llmd.client` mirrors only the sending and reading.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar
from urllib.parse import quote_plus

import httpx
from opentelemetry import baggage
from opentelemetry import context as context_api

from appsdk import runtime as _runtime
from appsdk.llmd import headers as h
from appsdk.llmd import http_span
from appsdk.llmd.body import ACCEPT_ENCODING, BodyReader, UnsupportedEncoding
from appsdk.llmd.calls import Call, build_call, encode_body
from appsdk.llmd.errors import (
    LLMDError,
    ModelNotFoundError,
    NotFoundError,
    ResponseError,
    ResponseTooLargeError,
)
from appsdk.llmd.generation import Generation
from appsdk.llmd.models import Model, ModelList
from appsdk.llmd.raw import RawResponse, with_body
from appsdk.policy import Policy
from appsdk.pricing import PriceTable
from appsdk.redaction import Redactor

__all__ = ["DEFAULT_BASE_URL", "LLMDBase", "already_read", "client_arguments", "encoding_of"]

M = TypeVar("M", Model, ModelList)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_STREAM_DEADLINE_S = 600.0
_ERROR_BODY_BYTES = 64 * 1024
# W3C Baggage's limits (what every receiver takes; OpenTelemetry's propagator applies them too):
# the whole header, its list-members, and one member, as encoded on the wire.
BAGGAGE_MAX_BYTES = 8192
BAGGAGE_MAX_MEMBERS = 180
BAGGAGE_MAX_MEMBER_BYTES = 4096
# The ecosystem's variables, read only when the argument is not given (as openai reads them).
OPENAI_API_KEY = "OPENAI_API_KEY"
OPENAI_BASE_URL = "OPENAI_BASE_URL"


def normalize_base_url(url: str | httpx.URL) -> str:
    """The gateway's root: openai users write ``.../v1``, appsdk adds ``/v1`` itself."""
    text = str(url).rstrip("/")
    return text[:-3] if text.endswith("/v1") else text


def client_arguments(
    *,
    base_url: str | httpx.URL | None,
    api_key: str | None,
    timeout: Any,
    default_headers: Mapping[str, str] | None,
    default_query: Mapping[str, object] | None,
    httpx_options: dict[str, Any],
) -> dict[str, Any]:
    """The ``httpx.Client`` arguments for openai's constructor arguments.

    ``api_key`` goes as a bearer token; ``base_url`` may end in ``/v1`` or not; without them
    ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` are read, as openai does, with one difference:
    the key from the environment is only sent to the URL from the environment. A client
    pointed at a gateway in code never carries a key it was not given (an ``OPENAI_API_KEY``
    meant for api.openai.com must not reach another host's logs).
    """
    url_from_env = base_url is None
    if base_url is None:
        base_url = os.environ.get(OPENAI_BASE_URL) or DEFAULT_BASE_URL
    if api_key is None and url_from_env and os.environ.get(OPENAI_BASE_URL):
        api_key = os.environ.get(OPENAI_API_KEY) or None
    # Only encodings the client can decode within its limits (httpx would offer br and zstd
    # when their packages are installed).
    headers = httpx.Headers({"accept-encoding": ACCEPT_ENCODING})
    headers.update(httpx_options.pop("headers", None) or {})  # case-insensitive, as on the wire
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    headers.update(default_headers or {})
    params = httpx_options.pop("params", None)
    if default_query:
        query: Any = dict(default_query)
        params = httpx.QueryParams(params).merge(query)
    return {
        "base_url": normalize_base_url(base_url),
        "timeout": timeout,
        "headers": headers,
        "params": params,
        **httpx_options,
    }


def _retry_policy(retry: h.RetryPolicy | None, max_retries: int | None) -> h.RetryPolicy:
    if retry is not None and max_retries is not None:
        raise TypeError("give retry= or max_retries=, not both")
    if max_retries is not None:
        return h.RetryPolicy(max_attempts=max_retries + 1)
    return retry if retry is not None else h.RetryPolicy()


class LLMDBase:
    """Request building, headers, retries and recording: everything except I/O."""

    _options: h.LLMDOptions
    _retry: h.RetryPolicy
    _policy: Policy | None
    _prices: PriceTable | None
    _session_affinity: bool
    _session_token: str | None
    _max_response_bytes: int
    _stream_deadline_s: float | None
    _option_headers: tuple[tuple[str, str], ...]
    headers: httpx.Headers
    params: httpx.QueryParams
    timeout: httpx.Timeout
    base_url: httpx.URL

    def _setup(
        self,
        *,
        options: h.LLMDOptions | None,
        retry: h.RetryPolicy | None,
        max_retries: int | None,
        policy: Policy | None,
        prices: PriceTable | None,
        session_affinity: bool,
        max_response_bytes: int,
        stream_deadline_s: float | None,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._stream_deadline_s = stream_deadline_s
        self._options = options or h.LLMDOptions()
        self._option_headers = tuple(self._options.headers().items())
        self._retry = _retry_policy(retry, max_retries)
        self._policy = policy
        self._prices = prices if prices is not None else PriceTable.in_force()
        self._session_affinity = session_affinity
        self._session_token = None
        # The httpx instrumentation's client span, ended when a streamed answer is.
        http_span.instrument(self)  # type: ignore[arg-type]
        self._bind_namespaces()

    def _bind_namespaces(self) -> None:
        raise NotImplementedError

    @property
    def session_token(self) -> str | None:
        """The gateway's session token, echoed back when session affinity is on."""
        return self._session_token

    @property
    def api_key(self) -> str | None:
        """The bearer token sent with every request, if any (as openai's ``client.api_key``)."""
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt (openai's name; ``RetryPolicy.max_attempts - 1``)."""
        return self._retry.max_attempts - 1

    def with_options(
        self,
        *,
        api_key: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        options: h.LLMDOptions | None = None,
        policy: Policy | None = None,
    ) -> Self:
        """A copy with some options changed, sharing this client's connection pool (as
        openai's ``with_options``). Close the original, not the copy.

        Example:
            >>> client.with_options(timeout=5, max_retries=0).chat(...)  # doctest: +SKIP
        """
        clone = copy.copy(self)
        # httpx's setters take what its constructor takes and make new objects: nothing that
        # changes here is shared with the original.
        settable: Any = clone
        headers = dict(self.headers)
        if api_key is not None:
            headers["authorization"] = f"Bearer {api_key}"
        settable.headers = {**headers, **(default_headers or {})}
        query: Any = dict(default_query or {})
        settable.params = self.params.merge(query)
        if base_url is not None:
            settable.base_url = normalize_base_url(base_url)
        if timeout is not None:
            settable.timeout = timeout
        if max_retries is not None:
            clone._retry = h.RetryPolicy(max_attempts=max_retries + 1)
        if options is not None:
            clone._options = options
            clone._option_headers = tuple(options.headers().items())
        if policy is not None:
            clone._policy = policy
        clone._bind_namespaces()
        return clone

    def _stamp(self, request: httpx.Request) -> None:
        """Headers every request gets, typed call or plain ``client.post``."""
        if h.REQUEST_ID not in request.headers:
            request.headers[h.REQUEST_ID] = h.new_request_id()
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
        return filtered_baggage(self._allowed_baggage, self._baggage_redactor)

    def _baggage_redactor(self) -> Redactor:
        return self._policy.redactor if self._policy is not None else _redactor_in_force()

    def _allowed_baggage(self) -> tuple[str, ...]:
        if self._policy is not None:
            return self._policy.baggage_allow
        pipeline = _runtime.current()
        return pipeline.policy.baggage_allow if pipeline is not None else ()

    def _prepare(self, operation: str, stream: bool, params: dict[str, Any]) -> Call:
        """The call for a typed method's keywords (appsdk's, openai's, and the body's)."""
        prompt = params.pop("prompt", None)
        if operation == "chat":
            content = params.pop("messages", None)
        elif operation == "embeddings":
            content = params.pop("input", None)
        elif hasattr(prompt, "compile"):
            content = None
        else:
            content, prompt = prompt, None
        return build_call(
            operation,
            model=params.pop("model", None),
            content=content,
            stream=stream,
            prompt=prompt,
            variables=params.pop("variables", None),
            request_id=params.pop("request_id", None),
            options=self._options,
            extra_headers=params.pop("extra_headers", None),
            extra_body=params.pop("extra_body", None),
            extra_query=params.pop("extra_query", None),
            params=params,
        )

    @staticmethod
    def _encode(call: Call) -> bytes:
        """The JSON body.

        Raises:
            TypeError: a value in the request cannot be sent as JSON (named in the message).
        """
        try:
            return encode_body(call.body)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the {call.operation} request cannot be sent as JSON: {exc}") from exc

    def _build(self, call: Call, content: bytes, timeout: Any) -> httpx.Request:
        return self.build_request(  # type: ignore[attr-defined,no-any-return]
            "POST",
            call.path,
            content=content,
            headers=call.headers,
            params=call.query,
            timeout=self.timeout if timeout is None or _not_given(timeout) else timeout,
        )

    def _get_request(self, path: str, params: dict[str, Any]) -> httpx.Request:
        timeout = params.pop("timeout", None)
        query = params.pop("extra_query", None)
        headers = dict(params.pop("extra_headers", None) or {})
        headers.setdefault(h.REQUEST_ID, params.pop("request_id", None) or h.new_request_id())
        params.pop("extra_body", None)
        if params:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(params))}")
        return self.build_request(  # type: ignore[attr-defined,no-any-return]
            "GET",
            path,
            headers=headers,
            params=query,
            timeout=self.timeout if timeout is None or _not_given(timeout) else timeout,
        )

    def _retry_delay(self, attempt: int, error: LLMDError) -> float | None:
        if not error.retryable:
            return None
        return self._retry.delay(attempt, getattr(error, "retry_after", None))

    def _whole(self, response: httpx.Response, error_body: bool) -> bool:
        """True when one plain read is safe: not encoded, and declared within the limit."""
        declared = response.headers.get("content-length", "")
        return (
            not error_body
            and declared.isdigit()
            and int(declared) <= self._max_response_bytes
            and response.headers.get("content-encoding", "identity") == "identity"
        )

    def _reader(self, request_id: str, response: httpx.Response, error_body: bool) -> BodyReader:
        """A reader for ``response``; an answer declared larger than the limit raises unread."""
        limit = _ERROR_BODY_BYTES if error_body else self._max_response_bytes
        declared = response.headers.get("content-length", "")
        if not error_body and declared.isdigit() and int(declared) > limit:
            raise self._too_large(request_id, response, int(declared))
        try:
            return BodyReader(encoding_of(response), limit, error_body)
        except UnsupportedEncoding as exc:
            raise ResponseError(
                f"the gateway answered with Content-Encoding {exc}, which was not asked for",
                status=response.status_code,
                request_id=request_id,
            ) from None

    def _too_large(
        self, request_id: str | None, response: httpx.Response, size: int
    ) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"the answer is larger than max_response_bytes={self._max_response_bytes} "
            f"({size} bytes, decoded, when reading stopped); raise the limit if such answers "
            "are expected",
            status=response.status_code,
            request_id=request_id,
        )

    @staticmethod
    def _is_json(response: httpx.Response) -> bool:
        """A stream request answered with JSON (an error the gateway did not stream)."""
        kind = response.headers.get("content-type", "")
        return "json" in kind and "event-stream" not in kind

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

    def _answer(
        self,
        call: Call,
        response: httpx.Response,
        body: bytes,
        generation: Generation,
        raw: bool,
    ) -> Any:
        try:
            result = self._decode(call, response, body)
        except LLMDError as error:
            generation.fail(error)
            raise
        call.record(generation, result)
        if raw:
            return RawResponse(with_body(response, body), result, source=response)
        return result

    @staticmethod
    def _needs_listing(error: LLMDError) -> bool:
        """Whether a failed ``GET /v1/models/{id}`` should be answered from the list: the
        route is missing (vLLM has none), not the model."""
        return type(error) is NotFoundError

    @staticmethod
    def _find_model(model: str, listing: ModelList, error: LLMDError) -> Model:
        for card in listing.data:
            if card.id == model:
                return card
        raise ModelNotFoundError(
            f"the gateway does not serve the model {model!r}",
            status=404,
            code="model_not_found",
            request_id=error.request_id,
        )

    @staticmethod
    def _parse_models(request_id: str, response: httpx.Response, body: bytes) -> ModelList:
        return _validated(ModelList, request_id, response, body)

    @staticmethod
    def _parse_model(request_id: str, response: httpx.Response, body: bytes) -> Model:
        return _validated(Model, request_id, response, body)


def _validated(kind: type[M], request_id: str, response: httpx.Response, body: bytes) -> M:
    try:
        return kind.model_validate_json(body)
    except ValueError:
        raise ResponseError(
            f"the gateway's answer is not a {kind.__name__}",
            status=response.status_code,
            request_id=request_id,
        ) from None


def already_read(response: httpx.Response) -> bool:
    """A response httpx read (and decoded) when it was made: one built from bytes, as
    ``httpx.MockTransport`` handlers return. There are no raw bytes left to read."""
    return response.is_stream_consumed


def encoding_of(response: httpx.Response) -> str | None:
    """The ``Content-Encoding`` still to undo (none once httpx decoded the body itself)."""
    return None if already_read(response) else response.headers.get("content-encoding")


def _not_given(value: Any) -> bool:
    return type(value).__name__ in ("NotGiven", "Omit")


def filtered_baggage(
    allowed_keys: Callable[[], tuple[str, ...]],
    redactor: Callable[[], Redactor] | None = None,
) -> context_api.Context | None:
    """The current context with baggage cut down to what may leave, or None if nothing is cut.

    What may leave: members of the allowed keys whose value holds nothing ``redactor`` (by
    default the configured policy's) would replace, within W3C Baggage's bounds (members past
    them are dropped, as encoded on the wire: 8192 bytes, 180 members, 4096 bytes each). The
    allow-list is only looked up when there is baggage, the redactor only when a member of it
    is there.
    """
    ctx = context_api.get_current()
    entries = baggage.get_all(ctx)
    if not entries:
        return None
    allowed = allowed_keys()
    redact: Callable[[str], str] | None = None
    size = count = 0
    changed = False
    for key, value in entries.items():
        if key in allowed:
            text = str(value)
            member = _member_bytes(key, text)
            separator = 1 if count else 0
            if count < BAGGAGE_MAX_MEMBERS and size + separator + member <= BAGGAGE_MAX_BYTES:
                if redact is None:
                    redact = (redactor or _redactor_in_force)().redact_repeated
                if redact(text) == text:
                    size += separator + member
                    count += 1
                    continue
        ctx = baggage.remove_baggage(key, ctx)
        changed = True
    return ctx if changed else None


def _member_bytes(key: str, value: str) -> int:
    """Bytes of ``key=value`` as the W3C propagator encodes it; past the member bound, a size
    no header takes (an encoded text is never shorter than the text: a 1 MB value is not
    encoded to learn that)."""
    if len(key) + 1 + len(value) > BAGGAGE_MAX_MEMBER_BYTES:
        return BAGGAGE_MAX_BYTES + 1
    encoded = len(quote_plus(key)) + 1 + len(quote_plus(value))
    return encoded if encoded <= BAGGAGE_MAX_MEMBER_BYTES else BAGGAGE_MAX_BYTES + 1


def _redactor_in_force() -> Redactor:
    """The configured policy's redactor, else the built-in detectors."""
    pipeline = _runtime.current()
    return pipeline.engine.redactor if pipeline is not None else Redactor()
