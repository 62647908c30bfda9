"""GenAI client metrics to the traces' OTLP endpoint, when the application has no meter provider.

The OpenTelemetry SDK's OTLP metric exporter is used as is: it reads the same ``OTEL_*``
endpoint and headers the application configured for its collector. Langfuse takes no metrics,
so nothing is sent there.

A traces-only backend (Jaeger, Tempo) refuses ``/v1/metrics``: the first refusal switches
the metrics off for the process, with one warning naming ``APPSDK_METRICS=false``, instead of
the SDK's error line at every export interval. Traces are not affected.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics

from appsdk.errors import safe_url

if TYPE_CHECKING:
    import requests
    from opentelemetry.sdk.metrics.export import MetricExporter

    from appsdk.config import Settings

__all__ = ["REFUSED_STATUSES", "install_meter_provider", "install_pending", "install_when_used"]

_log = logging.getLogger("appsdk")
_installed: Any = None
_pending: Settings | None = None
_lock = threading.Lock()
_URLISH = re.compile(r"\S+://\S+|\S*\?\S+")


class _SafeURLs(logging.Filter):
    """Rewrites every URL in a record through :func:`appsdk.errors.safe_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message or "?" in message:
            record.msg = _URLISH.sub(lambda m: safe_url(m.group()), message)
            record.args = ()
        return True


_SAFE_URLS = _SafeURLs()
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
)


# Answers that mean "this endpoint takes no metrics", for as long as the configuration stands:
# no route (404: Jaeger, Tempo), no POST there (405), not OTLP protobuf (415), not implemented
# (501). Not here: 5xx, 429 and connection failures are transient (the SDK retries them); 400
# and 413 concern one batch; 401 and 403 are the credentials, which the traces share and whose
# own errors say so.
REFUSED_STATUSES = frozenset({404, 405, 415, 501})


class _Refusal:
    """Watches the metric exporter's answers; on a refusal, switches it off with one warning.

    ``saw`` is a response hook of the exporter's ``requests`` session (the exporter's public
    ``session`` argument): it sees the status before the SDK logs its error line, and ``filter``
    (on the SDK exporter's loggers) drops that line when the export it ends was refused.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.status: int | None = None
        self._exporting: int | None = None  # the thread inside a watched export

    def saw(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if self.status is None and response.status_code in REFUSED_STATUSES:
            self.status = response.status_code

    @contextmanager
    def watching(self) -> Iterator[None]:
        was = self.status
        self._exporting = threading.get_ident()
        try:
            yield
        finally:
            self._exporting = None
        if was is None and self.status is not None:
            _log.warning(
                "appsdk: %s refused GenAI client metrics (HTTP %s): the endpoint takes no "
                "metrics, so they are switched off for this process (traces are not affected); "
                "set APPSDK_METRICS=false to not send them at all",
                safe_url(self.url),
                self.status,
            )

    def filter(self, record: logging.LogRecord) -> bool:
        # A logger's filter runs on the thread that logs: the export this object watches.
        return self.status is None or self._exporting != threading.get_ident()


def _exporter(url: str, headers: dict[str, str], timeout_s: float) -> MetricExporter:
    """The SDK's OTLP metric exporter, switched off for good by the first refusal (``_Refusal``)."""
    import requests
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData

    refusal = _Refusal(url)
    session = requests.Session()
    session.hooks["response"].append(refusal.saw)
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(refusal)

    class RefusableExporter(OTLPMetricExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float | None = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            if refusal.status is not None:
                return MetricExportResult.SUCCESS  # switched off: the reader's data is dropped
            with refusal.watching():
                return super().export(metrics_data, timeout_millis, **kwargs)

    return RefusableExporter(endpoint=url, headers=headers, timeout=timeout_s, session=session)


def install_when_used(settings: Settings) -> None:
    """Install the meter provider for ``settings`` when the first metric is recorded.

    The metrics SDK and its exporter take longer to load than the rest of ``configure()``; an
    application that records none (no llm-d client call) never loads them.
    """
    global _pending
    _pending = settings


def install_pending() -> None:
    """Install the provider :func:`install_when_used` asked for, once; cheap when there is none."""
    global _pending
    if _pending is None:
        return
    with _lock:
        settings, _pending = _pending, None
        if settings is not None:
            install_meter_provider(settings)


def install_meter_provider(settings: Settings) -> Any:
    """Install a MeterProvider exporting to the OTLP endpoint, unless one is set; else None."""
    global _installed
    if _installed is not None:
        return _installed
    target = next((spec for spec in settings.exporters if spec.metrics), None)
    if target is None or target.url is None:
        return None
    if type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        return None  # the application installed its own: the client's metrics go there
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    parts = urlsplit(target.url)
    url = urlunsplit(parts._replace(path=parts.path.removesuffix("/v1/traces") + "/v1/metrics"))
    # The SDK's exporter logs its URL on every failed retry: never with a credential in it.
    # (A logger's filter sees only its own records, so each module's logger gets one.)
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_SAFE_URLS)
    reader = PeriodicExportingMetricReader(
        _exporter(url, dict(target.headers), settings.export_timeout_s),
        export_interval_millis=10_000,
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    # The SDK's own exit hook waits up to 30 s for a dead collector; keep appsdk's deadline.
    atexit.register(provider.shutdown, timeout_millis=int(settings.shutdown_timeout_s * 1000))
    _installed = provider
    return provider
