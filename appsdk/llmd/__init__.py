"""The llm-d gateway client: typed, traced, with llm-d's headers and clear errors.

The clients take openai's constructor and call shapes, and the errors answer to openai's
class names too (``RateLimitError``, ``APIStatusError``, ``APIConnectionError``, ...).
"""

from appsdk.llmd.async_client import AsyncLLMDClient
from appsdk.llmd.client import LLMDClient
from appsdk.llmd.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LLMDConnectionError,
    LLMDError,
    LLMDTimeoutError,
    ModelNotFoundError,
    NoEndpointsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RateLimitError,
    ResponseError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    UnavailableError,
    UnprocessableEntityError,
)
from appsdk.llmd.headers import LLMDOptions, RetryPolicy
from appsdk.llmd.raw import RawResponse
from appsdk.llmd.stream import AsyncStream, Stream

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncLLMDClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "LLMDClient",
    "LLMDConnectionError",
    "LLMDError",
    "LLMDOptions",
    "LLMDTimeoutError",
    "ModelNotFoundError",
    "NoEndpointsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimitedError",
    "RawResponse",
    "ResponseError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "Stream",
    "StreamError",
    "UnavailableError",
    "UnprocessableEntityError",
]
