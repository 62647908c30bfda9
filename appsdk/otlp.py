"""OTLP/HTTP (protobuf) span export to one endpoint: Langfuse's or any collector's.

Encoding is the OpenTelemetry SDK's (``encode_spans``); sending is a plain httpx POST. We do
not use ``OTLPSpanExporter`` itself because it merges ``OTEL_EXPORTER_OTLP_HEADERS`` into every
instance (a collector's credentials would reach Langfuse), retries inside ``export`` past the
caller's deadline, and logs every failed batch; here each endpoint has only its own headers, a
failure is classified (retryable or not) for the caller, and an outage is reported once.
"""

from __future__ import annotations

import base64
import gzip
import logging
import threading
from collections.abc import Mapping, Sequence

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from appsdk.batching import ExportOutcome
from appsdk.errors import safe_url

__all__ = ["ExportOutcome", "OTLPHttpExporter", "langfuse_exporter"]

_log = logging.getLogger("appsdk")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class OTLPHttpExporter(SpanExporter):
    """POSTs spans as OTLP protobuf to ``endpoint``, gzip-compressed.

    Args:
        name: how logs and ``appsdk.stats()`` call this backend (never a credential).
        endpoint: full traces URL, e.g. ``http://127.0.0.1:4318/v1/traces``; logs show it
            without the credentials it may carry (:func:`appsdk.errors.safe_url`).
        headers: sent with every request; values never appear in logs.
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
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self._compression = compression
        self._hint = hint_on_auth_error
        base_headers = {"content-type": "application/x-protobuf"}
        if compression:
            base_headers["content-encoding"] = "gzip"
        self._client = httpx.Client(
            headers={**base_headers, **dict(headers or {})}, timeout=timeout_s
        )
        self._failing = False
        self._lock = threading.Lock()
        self._closed = False

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The request body for ``spans``: OTLP protobuf, gzip-compressed if configured."""
        body: bytes = encode_spans(spans).SerializeToString()
        return gzip.compress(body, compresslevel=5) if self._compression else body

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
        if self._closed:
            return ExportOutcome(ok=False, retryable=True, reason="exporter is shut down")
        try:
            with suppress_instrumentation():
                response = self._client.post(self.endpoint, content=body)
        except httpx.TimeoutException:
            outcome = ExportOutcome(ok=False, retryable=True, reason="timed out")
        except (httpx.TransportError, RuntimeError) as exc:
            outcome = ExportOutcome(ok=False, retryable=True, reason=type(exc).__name__)
        else:
            code = response.status_code
            if 200 <= code < 300:
                outcome = ExportOutcome(ok=True, status=code)
            else:
                outcome = ExportOutcome(
                    ok=False,
                    retryable=code in RETRYABLE_STATUS,
                    status=code,
                    reason=f"HTTP {code} {response.reason_phrase}",
                )
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
                    "the backend is unreachable or overloaded; spans wait in the spool and are "
                    "sent when it recovers (appsdk spool status)"
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
        self._closed = True
        self._client.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def langfuse_exporter(
    *, base_url: str, public_key: str, secret_key: str, timeout_s: float
) -> OTLPHttpExporter:
    """The exporter for Langfuse's OTLP endpoint, with Basic auth and ingestion version 4."""
    token = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
    return OTLPHttpExporter(
        name="langfuse",
        endpoint=f"{base_url.rstrip('/')}/api/public/otel/v1/traces",
        headers={"authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"},
        timeout_s=timeout_s,
        hint_on_auth_error="check LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL",
    )
