"""``with_raw_response``: the HTTP answer of a call, with its parsed value one ``parse()`` away."""

from __future__ import annotations

import datetime
from typing import Generic, TypeVar

import httpx

from appsdk.llmd import headers as h

__all__ = ["RawResponse", "with_body"]

T = TypeVar("T")


class RawResponse(Generic[T]):
    """What ``client.chat.completions.with_raw_response.create(...)`` returns, as openai's
    ``LegacyAPIResponse``: headers and status now, the payload (or stream) from ``parse()``.

    Example:
        >>> raw = client.chat.completions.with_raw_response.create(...)  # doctest: +SKIP
        >>> raw.headers["x-request-id"], raw.parse().choices[0].message.content
    """

    def __init__(
        self, http_response: httpx.Response, parsed: T, *, source: httpx.Response | None = None
    ) -> None:
        self.http_response = http_response
        """The ``httpx.Response``; for a stream, the one the stream is read from."""
        self._parsed = parsed
        self._source = source or http_response

    def parse(self) -> T:
        """The payload (a stream for ``stream=True``), already parsed: calls are not repeated."""
        return self._parsed

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def request_id(self) -> str | None:
        """The call's ``x-request-id`` as the gateway answered it (else as it was sent)."""
        answered: str | None = self.headers.get(h.REQUEST_ID)
        sent: str | None = self.http_response.request.headers.get(h.REQUEST_ID)
        return answered or sent

    @property
    def url(self) -> httpx.URL:
        return self.http_response.url

    @property
    def method(self) -> str:
        return self.http_response.request.method

    @property
    def http_version(self) -> str:
        return self.http_response.http_version

    @property
    def elapsed(self) -> datetime.timedelta:
        """From sending the request to the end of the answer (for a stream: once it ended)."""
        return self._source.elapsed

    @property
    def content(self) -> bytes:
        """The body as read (empty for a stream: iterate ``parse()`` instead)."""
        return self.http_response.content

    @property
    def text(self) -> str:
        return self.http_response.text

    def __repr__(self) -> str:
        return f"<RawResponse [{self.status_code}] {self.method} {self.url}>"


def with_body(response: httpx.Response, content: bytes) -> httpx.Response:
    """A copy of ``response`` holding the decoded body that was read, so ``.text`` and
    ``.json()`` work after the connection went back to the pool."""
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=content, request=response.request
    )
