"""OTLP/HTTP (protobuf) span export to one endpoint: Langfuse's or any collector's.

Encoding is :mod:`appsdk.otlp_encoding` (the bytes of the SDK's ``encode_spans``, written
directly, three times faster); sending is a plain httpx POST. We do
not use ``OTLPSpanExporter`` itself because it merges ``OTEL_EXPORTER_OTLP_HEADERS`` into every
instance (a collector's credentials would reach Langfuse), retries inside ``export`` past the
caller's deadline, and logs every failed batch; here each endpoint has only its own headers, a
failure is classified (retryable or not) for the caller, and an outage is reported once.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from appsdk.backoff import retry_after_s
from appsdk.batching import ExportOutcome, SpoolableExporter
from appsdk.errors import safe_url
from appsdk.otlp_encoding import encode_request

if TYPE_CHECKING:
    import httpx

    from appsdk.config import ExporterSpec

__all__ = ["ExportOutcome", "OTLPHttpExporter", "exporter_for"]

_log = logging.getLogger("appsdk")
_GZIP = {"content-encoding": "gzip"}


def _gzipped(body: bytes) -> bool:
    """Whether ``body`` is gzip: its magic bytes, which no OTLP protobuf body starts with (its
    first byte is field 1's tag, 0x0a). A spooled body is sent as it was stored, whatever the
    compression setting is now."""
    return body[:2] == b"\x1f\x8b"


# Level 1 deflates prose about twice as fast as 5, for a body about 15% larger: the exporter
# thread's time is the application's too (it shares the process, and the GIL around it).
_GZIP_LEVEL = 1

# What retrying cannot fix: the request itself is wrong, or the credentials are refused.
# Everything else that is not a success can succeed later and is retried with backoff: 5xx,
# 429, 408, a 404 or a redirect from a proxy or a deploy in progress (redirects are never
# followed: a POST body must not go to another host). 413 is split, not rejected.
REJECTED_STATUS = frozenset({400, 401, 403, 405, 409, 410, 415, 422})


class OTLPHttpExporter(SpanExporter, SpoolableExporter):
    """POSTs spans as OTLP protobuf to ``endpoint``, gzip-compressed.

    Args:
        name: how logs and ``appsdk.stats()`` call this backend (never a credential).
        endpoint: full traces URL, e.g. ``http://127.0.0.1:4318/v1/traces``; logs show it
            without the credentials it may carry (:func:`appsdk.errors.safe_url`).
        headers: sent with every request; values never appear in logs.
        auth: user and password of HTTP Basic auth (httpx's ``BasicAuth``), if any.
        timeout_s: deadline of one request.
        hint_on_auth_error: added to the warning on 401/403 (which variable to check).
    """

    def __init__(
        self,
        *,
        name: str,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        compression: bool = True,
        hint_on_auth_error: str = "check the endpoint's credentials",
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self._compression = compression
        self._hint = hint_on_auth_error
        # content-encoding goes with each body as it is (see send_encoded), not with the client.
        self._headers = {"content-type": "application/x-protobuf", **dict(headers or {})}
        self._auth = auth
        self._timeout_s = timeout_s
        # Made on the sender thread at the first send: importing httpx (~60 ms) is not the
        # application's to wait for at configure().
        self._client: httpx.Client | None = None
        self._failing = False
        self._lock = threading.Lock()
        self._closed = False
        if hasattr(os, "register_at_fork"):
            # A child must not inherit a lock held by a thread that did not come along, nor
            # the parent's open connections.
            ref = weakref.ref(self)

            def forked() -> None:
                exporter = ref()
                if exporter is not None:
                    exporter._forked()

            os.register_at_fork(after_in_child=forked)

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._client = None

    def split(self, body: bytes) -> list[tuple[bytes, int]]:
        """An encoded batch as two halves, each encoded the same way, with their span counts."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        gzipped = _gzipped(body)
        raw = gzip.decompress(body) if gzipped else body
        request = ExportTraceServiceRequest.FromString(raw)
        located = [
            (r, s, span)
            for r, resource in enumerate(request.resource_spans)
            for s, scope in enumerate(resource.scope_spans)
            for span in scope.spans
        ]
        if len(located) < 2:
            return []
        middle = len(located) // 2
        halves = (located[:middle], located[middle:])
        return [self._encode_part(request, part, gzipped) for part in halves]

    def _encode_part(
        self, request: Any, located: list[tuple[int, int, Any]], gzipped: bool
    ) -> tuple[bytes, int]:
        part = type(request)()
        part.CopyFrom(request)
        for resource in part.resource_spans:
            for scope in resource.scope_spans:
                del scope.spans[:]
        for r, s, span in located:
            part.resource_spans[r].scope_spans[s].spans.append(span)
        raw = part.SerializeToString()
        body = gzip.compress(raw, compresslevel=_GZIP_LEVEL) if gzipped else raw
        return body, len(located)

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The request body for ``spans``: OTLP protobuf, gzip-compressed if configured."""
        body = encode_request(spans)
        return gzip.compress(body, compresslevel=_GZIP_LEVEL) if self._compression else body

    def send(self, spans: Sequence[ReadableSpan]) -> ExportOutcome:
        """Send one batch and say how it went; never raises."""
        try:
            body = self.encode(spans)
        except Exception as exc:  # an encoding bug must not kill the export thread
            outcome = ExportOutcome(ok=False, reason=f"{type(exc).__name__}: {exc}")
            self._report(outcome, len(spans))
            return outcome
        return self.send_encoded(body, len(spans))

    def send_encoded(self, body: bytes, count: int) -> ExportOutcome:
        """POST an encoded body (a fresh batch or a spooled one); never raises."""
        client = self._http()
        if client is None:
            return ExportOutcome(ok=False, retryable=True, reason="exporter is shut down")
        import httpx
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        try:
            with suppress_instrumentation():
                response = client.post(
                    self.endpoint, content=body, headers=_GZIP if _gzipped(body) else None
                )
        except httpx.TimeoutException:
            outcome = ExportOutcome(ok=False, retryable=True, reason="timed out")
        except (httpx.TransportError, RuntimeError) as exc:
            outcome = ExportOutcome(ok=False, retryable=True, reason=connection_failure(exc))
        else:
            outcome = classify(response)
        self._report(outcome, count)
        return outcome

    def _report(self, outcome: ExportOutcome, count: int) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, not outcome.ok
        if outcome.ok and was_failing:
            _log.warning("appsdk: export to %s recovered", self.name)
        elif not outcome.ok and not was_failing:
            hint = (
                self._hint
                if outcome.status in (401, 403)
                else (
                    "spans wait in the spool and are sent when it answers again "
                    "(appsdk spool status)"
                    if outcome.retryable
                    else "the backend rejected the data; it is kept in the spool with the reason"
                )
            )
            _log.warning(
                "appsdk: export to %s (%s) failed: %s (%d spans); %s. Further failures are "
                "counted in appsdk.stats() until it recovers.",
                self.name,
                safe_url(self.endpoint),
                outcome.reason,
                count,
                hint,
            )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self.send(spans).ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def warm(self) -> None:
        """Load what sending needs (httpx); the export thread calls it when it starts, so
        neither the application nor the first batch waits for it."""
        self._http()

    def _http(self) -> httpx.Client | None:
        """The HTTP client, made at first use; None once shut down, so that a send racing
        ``shutdown()`` never opens a client (and a connection) that nobody closes."""
        import httpx  # outside the lock: an import can take long, and a fork may come

        with self._lock:
            if self._closed:
                return None
            if self._client is None:
                auth = httpx.BasicAuth(*self._auth) if self._auth is not None else None
                self._client = httpx.Client(
                    headers=self._headers, auth=auth, timeout=self._timeout_s
                )
            return self._client

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def classify(response: httpx.Response) -> ExportOutcome:
    """What one answer of an OTLP endpoint means for the batch it answered."""
    code = response.status_code
    if 200 <= code < 300:
        return ExportOutcome(ok=True, status=code)
    reason = f"HTTP {code} {response.reason_phrase}".rstrip()
    if 300 <= code < 400:
        location = response.headers.get("location")
        where = f" to {safe_url(location)}" if location else ""
        reason += f" (a redirect{where}: appsdk does not follow it; configure the final URL)"
    return ExportOutcome(
        ok=False,
        retryable=code not in REJECTED_STATUS and code != 413,
        status=code,
        reason=reason,
        retry_after_s=retry_after_s(response.headers.get("retry-after")),
        too_large=code == 413,
    )


def connection_failure(exc: Exception) -> str:
    """Which failure a transport error was, in words a user can act on."""
    text = " ".join(str(part) for part in (exc, exc.__cause__, exc.__context__) if part)
    lowered = text.lower()
    kinds = (
        (
            ("wrong_version_number", "record layer", "ssl", "tls"),
            "TLS handshake failed (is the endpoint plain HTTP? then use http://)",
        ),
        (("connection refused", "errno 111"), "connection refused (nothing listens there)"),
        (
            (
                "name or service not known",
                "nodename nor servname",
                "getaddrinfo",
                "errno -2",
                "errno -3",
                "temporary failure in name resolution",
            ),
            "host name not found",
        ),
        (("network is unreachable", "no route to host"), "network unreachable"),
        (
            ("connection reset", "remotedisconnected", "server disconnected"),
            "connection closed by the server",
        ),
    )
    for needles, meaning in kinds:
        if any(needle in lowered for needle in needles):
            return meaning
    return type(exc).__name__


def exporter_for(spec: ExporterSpec, timeout_s: float) -> OTLPHttpExporter:
    """The exporter of one OTLP destination of the settings (Langfuse's or a collector's)."""
    assert spec.url is not None, "the local store is not an OTLP destination"
    auth = (spec.auth[0], spec.auth[1].get_secret_value()) if spec.auth is not None else None
    hint = (
        "check LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL"
        if spec.kind == "langfuse"
        else "check the endpoint's credentials"
    )
    return OTLPHttpExporter(
        name=spec.name,
        endpoint=spec.url,
        headers=spec.headers,
        auth=auth,
        timeout_s=timeout_s,
        compression=spec.gzip,
        hint_on_auth_error=hint,
    )
