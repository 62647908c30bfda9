"""GenAI client metrics to the traces' OTLP endpoint, when the application has no meter provider.

The OpenTelemetry SDK's OTLP metric exporter is used as is: it reads the same ``OTEL_*``
endpoint and headers the application configured for its collector. Langfuse takes no metrics,
so nothing is sent there.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics

from appsdk.errors import safe_url

if TYPE_CHECKING:
    from appsdk.config import Settings

__all__ = ["install_meter_provider", "install_pending", "install_when_used"]

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
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    parts = urlsplit(target.url)
    url = urlunsplit(parts._replace(path=parts.path.removesuffix("/v1/traces") + "/v1/metrics"))
    # The SDK's exporter logs its URL on every failed retry: never with a credential in it.
    # (A logger's filter sees only its own records, so each module's logger gets one.)
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_SAFE_URLS)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=url, headers=dict(target.headers), timeout=settings.export_timeout_s
        ),
        export_interval_millis=10_000,
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    # The SDK's own exit hook waits up to 30 s for a dead collector; keep appsdk's deadline.
    atexit.register(provider.shutdown, timeout_millis=int(settings.shutdown_timeout_s * 1000))
    _installed = provider
    return provider
