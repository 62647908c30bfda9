"""The llm-d client's errors, and the one place that maps gateway answers onto them.

::

    AppSDKError
    └── LLMDError (APIError)            any failed call: .status_code, .code, .type, .param,
        │                               .body, .response, .request_id, .message
        ├── APIStatusError              the gateway answered with an error status
        │   ├── BadRequestError         400 (also 412 FailedPrecondition)
        │   ├── AuthenticationError     401
        │   ├── PermissionDeniedError   403
        │   ├── NotFoundError           404: nothing at that path (check base_url)
        │   │   └── ModelNotFoundError  404 from the API: no such model or LoRA adapter
        │   ├── ConflictError           409
        │   ├── UnprocessableEntityError 422
        │   ├── RateLimitedError        429 (RateLimitError); .dropped_reason, .retry_after
        │   └── ServerError             5xx (InternalServerError)
        │       └── UnavailableError    503
        │           └── NoEndpointsError 503 with rejected-no-endpoints
        ├── LLMDConnectionError         the gateway could not be reached (APIConnectionError)
        │   └── LLMDTimeoutError        no answer in time (APITimeoutError)
        ├── ResponseError               a body that is not what the API promises
        │   └── ResponseTooLargeError   larger than max_response_bytes
        └── StreamError                 an error event mid-stream, or a stream cut short

The names in parentheses are the ``openai`` package's names for the same errors, exported
here as aliases, so ``except RateLimitError as e: e.status_code`` reads as it does with openai.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx

from appsdk.backoff import retry_after_s
from appsdk.errors import AppSDKError
from appsdk.llmd.raw import with_body

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "LLMDConnectionError",
    "LLMDError",
    "LLMDTimeoutError",
    "ModelNotFoundError",
    "NoEndpointsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimitedError",
    "ResponseError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "UnavailableError",
    "UnprocessableEntityError",
    "error_from_response",
]

DROPPED_REASON_HEADER = "x-llm-d-request-dropped-reason"
_PICKER_TEXT = re.compile(r"^inference error:\s*(?P<code>\w+)\s*-\s*(?P<message>.*)$", re.DOTALL)


class LLMDError(AppSDKError):
    """A call to the llm-d gateway failed.

    Attributes:
        message: what went wrong, in the gateway's words where it gave any.
        status: the HTTP status, if there was a response (also ``status_code``).
        code: the error body's ``code`` (``model_not_found``), or the endpoint picker's code
            (``ResourceExhausted``).
        type: the error body's ``type`` (``invalid_request_error``, ``NotFoundError``).
        param: the request parameter the error is about, if the body names one.
        body: the error object as the gateway sent it: the JSON ``error`` object, else the
            whole JSON body, else the text; None without a response.
        response: the ``httpx.Response`` (its body as read, at most 64 KiB), if any.
        request_id: the ``x-request-id`` of the call, to find it in gateway and vLLM logs.
    """

    retryable = False
    """Whether the client's retry policy may try the call again."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        response: httpx.Response | None = None,
        body: object | None = None,
        type: str | None = None,
        param: str | None = None,
    ) -> None:
        if retryable is not None:
            self.retryable = retryable
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.body = body
        self.response = response
        self.request_id = request_id
        where = f" (request id {request_id})" if request_id else ""
        prefix = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{prefix}{message}{where}")

    @property
    def status_code(self) -> int | None:
        """The HTTP status (openai's name for :attr:`status`)."""
        return self.status


class APIStatusError(LLMDError):
    """The gateway answered with an error status (openai's ``APIStatusError``)."""

    status: int

    @property
    def status_code(self) -> int:
        return self.status


class BadRequestError(APIStatusError):
    """The gateway or vLLM rejected the request as malformed (400, 412)."""


class AuthenticationError(APIStatusError):
    """Missing or wrong credentials (401)."""


class PermissionDeniedError(APIStatusError):
    """The credentials may not use this model or route (403)."""


class NotFoundError(APIStatusError):
    """Nothing at that path (404 without an API error body): is ``base_url`` the gateway?"""


class ModelNotFoundError(NotFoundError):
    """No such model or LoRA adapter behind the gateway (404 with an API error body)."""


class ConflictError(APIStatusError):
    """The request conflicts with the server's state (409)."""


class UnprocessableEntityError(APIStatusError):
    """The request is well-formed but cannot be processed (422)."""


class _Shed(APIStatusError):
    """A request the gateway turned away for now: retryable, maybe with a wait and a reason.

    Attributes:
        dropped_reason: ``rejected-saturated``, ``rejected-ttl-expired``,
            ``rejected-no-endpoints``, ... from ``x-llm-d-request-dropped-reason``.
        retry_after: seconds from the ``Retry-After`` header, if any.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        dropped_reason: str | None = None,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.dropped_reason = dropped_reason
        self.retry_after = retry_after


class RateLimitedError(_Shed):
    """The gateway shed the request (429); retry after ``retry_after`` seconds if given."""


class ServerError(APIStatusError):
    """The gateway or vLLM failed (5xx)."""


class UnavailableError(_Shed, ServerError):
    """No capacity to serve the request now (503); retryable."""


class NoEndpointsError(UnavailableError):
    """The endpoint picker found no endpoint for the model (``rejected-no-endpoints``)."""


class LLMDConnectionError(LLMDError):
    """The gateway could not be reached (refused, reset, DNS)."""


class LLMDTimeoutError(LLMDConnectionError):
    """The gateway did not answer within the timeout, or a stream outran its deadline."""


class ResponseError(LLMDError):
    """The gateway answered with a body that is not what the API promises."""


class ResponseTooLargeError(ResponseError):
    """The answer (decoded) is larger than the client's ``max_response_bytes``."""


class StreamError(LLMDError):
    """The stream carried an error event, broke off, or ended without ``[DONE]``."""


# openai's names for the same classes.
APIError = LLMDError
APIConnectionError = LLMDConnectionError
APITimeoutError = LLMDTimeoutError
APIResponseValidationError = ResponseError
RateLimitError = RateLimitedError
InternalServerError = ServerError


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (see :mod:`appsdk.backoff`)."""
    return retry_after_s(value, cap_s=math.inf)


class ErrorBody:
    """What an error answer says: message, code, type, param and the body as openai keeps it."""

    __slots__ = ("api_shaped", "body", "code", "message", "param", "type")

    def __init__(self, text: str) -> None:
        self.code: str | None = None
        self.type: str | None = None
        self.param: str | None = None
        self.api_shaped = False
        """True when the body is the API's own error (vLLM JSON, the picker's text)."""
        match = _PICKER_TEXT.match(text.strip())
        if match is not None:
            self.message = match.group("message").strip()
            self.code = match.group("code")
            self.body: object | None = text.strip()
            self.api_shaped = True
            return
        try:
            parsed = json.loads(text)
        except ValueError:
            self.message = text.strip()[:500] or "no error message"
            self.body = text.strip() or None
            return
        nested = parsed.get("error") if isinstance(parsed, dict) else None
        error = nested if isinstance(nested, dict) else parsed
        self.body = error
        if not isinstance(error, dict):
            self.message = text.strip()[:500]
            return
        self.api_shaped = isinstance(nested, dict) or error.get("object") == "error"
        message = error.get("message") or error.get("detail") or json.dumps(parsed)[:500]
        self.message = str(message)
        self.code = _text(error.get("code"))
        self.type = _text(error.get("type"))
        self.param = _text(error.get("param"))

    def status_hint(self) -> int | None:
        """The HTTP status an error body names in its ``code`` (vLLM puts it there)."""
        code = self.code or ""
        return int(code) if code.isdigit() and 400 <= int(code) < 600 else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_error_body(text: str) -> tuple[str, str | None]:
    """``(message, code)`` from a vLLM JSON error (both shapes) or the picker's plain text."""
    parsed = ErrorBody(text)
    return parsed.message, parsed.code or parsed.type


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    409: ConflictError,
    412: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_from_response(response: httpx.Response, body: str, request_id: str | None) -> LLMDError:
    """The typed error for a non-2xx gateway answer (``body``: the part of it that was read)."""
    status = response.status_code
    parsed = ErrorBody(body)
    message = parsed.message
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else APIStatusError)
    if kind is ModelNotFoundError and not parsed.api_shaped:
        kind = NotFoundError
        message = (
            f"nothing at {response.request.url.path} ({message}); is base_url the gateway? "
            "appsdk adds /v1 to it"
        )
    if 300 <= status < 400:
        where = response.headers.get("location", "somewhere else")
        message = (
            f"the gateway redirected the call to {where}; redirects are not followed: "
            "set base_url to the address that serves the API"
        )
    dropped = response.headers.get(DROPPED_REASON_HEADER)
    if kind is UnavailableError and dropped == "rejected-no-endpoints":
        kind = NoEndpointsError
    if dropped:
        message = f"{message} [dropped: {dropped}]"
    common: dict[str, Any] = {
        "status": status,
        "code": parsed.code,
        "type": parsed.type,
        "param": parsed.param,
        "body": parsed.body,
        "response": with_body(response, body.encode()),
        "request_id": request_id or response.headers.get("x-request-id"),
    }
    if issubclass(kind, _Shed):
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return kind(message, dropped_reason=dropped, retry_after=retry_after, **common)
    return kind(message, **common)


def error_from_stream_body(
    response: httpx.Response, body: str, request_id: str | None
) -> LLMDError:
    """The typed error for a stream request answered with JSON instead of an event stream."""
    parsed = ErrorBody(body)
    hinted = parsed.status_hint()
    if hinted is not None and parsed.api_shaped:
        synthetic = httpx.Response(hinted, headers=response.headers, request=response.request)
        error = error_from_response(synthetic, body, request_id)
        error.message = f"{error.message} (sent as HTTP {response.status_code} JSON)"
        return error
    if parsed.api_shaped:
        return StreamError(
            f"the gateway answered the stream with an error: {parsed.message}",
            status=response.status_code,
            code=parsed.code,
            type=parsed.type,
            param=parsed.param,
            body=parsed.body,
            response=with_body(response, body.encode()),
            request_id=request_id,
        )
    return ResponseError(
        f"expected an event stream, the gateway answered {response.headers.get('content-type')}",
        status=response.status_code,
        response=with_body(response, body.encode()),
        request_id=request_id,
    )


def error_from_exception(exc: httpx.HTTPError, request_id: str | None) -> LLMDError:
    """The typed error for a transport failure (the only place httpx errors are translated)."""
    if isinstance(exc, httpx.TimeoutException):
        return LLMDTimeoutError(
            f"the request timed out: no answer from the gateway in time ({type(exc).__name__})",
            request_id=request_id,
            retryable=isinstance(exc, httpx.ConnectTimeout),
        )
    if isinstance(exc, httpx.TransportError):
        # Only a failed connect is safe to retry: the request never reached the gateway.
        return LLMDConnectionError(
            f"cannot reach the gateway ({type(exc).__name__}: {exc})",
            request_id=request_id,
            retryable=isinstance(exc, httpx.ConnectError),
        )
    return LLMDError(f"{type(exc).__name__}: {exc}", request_id=request_id)
