"""The llm-d gateway client: typed, traced, with llm-d's headers and clear errors."""

from appsdk.llmd.client import AsyncLLMDClient, LLMDClient
from appsdk.llmd.errors import (
    AuthenticationError,
    BadRequestError,
    LLMDConnectionError,
    LLMDError,
    LLMDTimeoutError,
    ModelNotFoundError,
    NoEndpointsError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseError,
    ResponseTooLargeError,
    ServerError,
    StreamError,
    UnavailableError,
)
from appsdk.llmd.headers import LLMDOptions, RetryPolicy
from appsdk.llmd.stream import AsyncStream, Stream

__all__ = [
    "AsyncLLMDClient",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "LLMDClient",
    "LLMDConnectionError",
    "LLMDError",
    "LLMDOptions",
    "LLMDTimeoutError",
    "ModelNotFoundError",
    "NoEndpointsError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "Stream",
    "StreamError",
    "UnavailableError",
]
