"""The llm-d client's errors, and the one place that maps gateway answers onto them.

::

    AppSDKError
    └── LLMDError                       any failed call; .status, .code, .request_id
        ├── BadRequestError             400 (also 412 FailedPrecondition)
        ├── AuthenticationError         401
        ├── PermissionDeniedError       403
        ├── ModelNotFoundError          404
        ├── RateLimitedError            429; .dropped_reason, .retry_after
        ├── ServerError                 500 and other 5xx
        │   └── UnavailableError        503
        │       └── NoEndpointsError    503 with rejected-no-endpoints
        ├── LLMDTimeoutError            no answer in time
        ├── LLMDConnectionError         the gateway could not be reached
        ├── ResponseError               a body that is not what the API promises
        │   └── ResponseTooLargeError   larger than max_response_bytes
        └── StreamError                 an error event in the middle of a stream
"""

from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from appsdk.errors import AppSDKError

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "LLMDConnectionError",
    "LLMDError",
    "LLMDTimeoutError",
    "ModelNotFoundError",
    "NoEndpointsError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "UnavailableError",
    "error_from_response",
]

DROPPED_REASON_HEADER = "x-llm-d-request-dropped-reason"
_PICKER_TEXT = re.compile(r"^inference error:\s*(?P<code>\w+)\s*-\s*(?P<message>.*)$", re.DOTALL)


class LLMDError(AppSDKError):
    """A call to the llm-d gateway failed.

    Attributes:
        status: the HTTP status, if there was a response.
        code: the gateway's error code or type (``RateLimitError``, ``ResourceExhausted``).
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
    ) -> None:
        if retryable is not None:
            self.retryable = retryable
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        where = f" (request id {request_id})" if request_id else ""
        prefix = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{prefix}{message}{where}")


class BadRequestError(LLMDError):
    """The gateway or vLLM rejected the request as malformed (400, 412)."""


class AuthenticationError(LLMDError):
    """Missing or wrong credentials (401)."""


class PermissionDeniedError(LLMDError):
    """The credentials may not use this model or route (403)."""


class ModelNotFoundError(LLMDError):
    """No such model or LoRA adapter behind the gateway (404)."""


class _Shed(LLMDError):
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


class ServerError(LLMDError):
    """The gateway or vLLM failed (5xx)."""


class UnavailableError(_Shed, ServerError):
    """No capacity to serve the request now (503); retryable."""


class NoEndpointsError(UnavailableError):
    """The endpoint picker found no endpoint for the model (``rejected-no-endpoints``)."""


class LLMDTimeoutError(LLMDError):
    """The gateway did not answer within the timeout."""


class LLMDConnectionError(LLMDError):
    """The gateway could not be reached (refused, reset, DNS)."""


class ResponseError(LLMDError):
    """The gateway answered with a body that is not what the API promises."""


class ResponseTooLargeError(ResponseError):
    """The answer is larger than the client's ``max_response_bytes``; it was not read."""


class StreamError(LLMDError):
    """The stream carried an error event, or broke off, after it had started."""


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def parse_error_body(text: str) -> tuple[str, str | None]:
    """``(message, code)`` from a vLLM JSON error (both shapes) or the picker's plain text."""
    match = _PICKER_TEXT.match(text.strip())
    if match is not None:
        return match.group("message").strip(), match.group("code")
    try:
        body = json.loads(text)
    except ValueError:
        return (text.strip()[:500] or "no error message"), None
    if isinstance(body, dict):
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        message = error.get("message") or error.get("detail") or json.dumps(body)[:500]
        code = error.get("type") or error.get("code")
        return str(message), (str(code) if code is not None else None)
    return text.strip()[:500], None


_BY_STATUS: dict[int, type[LLMDError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    412: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_from_response(response: httpx.Response, body: str, request_id: str | None) -> LLMDError:
    """The typed error for a non-2xx gateway answer."""
    status = response.status_code
    message, code = parse_error_body(body)
    dropped = response.headers.get(DROPPED_REASON_HEADER)
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else LLMDError)
    if kind is UnavailableError and dropped == "rejected-no-endpoints":
        kind = NoEndpointsError
    if dropped:
        message = f"{message} [dropped: {dropped}]"
    common: dict[str, Any] = {"status": status, "code": code, "request_id": request_id}
    if issubclass(kind, _Shed):
        return kind(message, dropped_reason=dropped, retry_after=retry_after, **common)
    return kind(message, **common)


def error_from_exception(exc: httpx.HTTPError, request_id: str | None) -> LLMDError:
    """The typed error for a transport failure (the only place httpx errors are translated)."""
    if isinstance(exc, httpx.TimeoutException):
        return LLMDTimeoutError(
            f"no answer from the gateway in time ({type(exc).__name__})",
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
