"""GenAI client metrics to the traces' OTLP endpoint, when the application has no meter provider.

The OpenTelemetry SDK's OTLP metric exporter is used as is: it reads the same ``OTEL_*``
endpoint and headers the application configured for its collector. Langfuse takes no metrics,
so nothing is sent there.
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

if TYPE_CHECKING:
    from appsdk.config import Settings

__all__ = ["install_meter_provider"]

_log = logging.getLogger("appsdk")
_installed: Any = None


def install_meter_provider(settings: Settings) -> Any:
    """Install a MeterProvider exporting to the OTLP endpoint, unless one is set; else None."""
    global _installed
    if _installed is not None:
        return _installed
    endpoints = settings.extra_otlp_endpoints()
    if (
        not settings.metrics
        or not endpoints
        or not (settings.otlp_traces_endpoint or settings.otlp_endpoint)
    ):
        return None
    if type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        return None  # the application installed its own: the client's metrics go there
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    traces_url, headers = endpoints[0]
    url = traces_url.removesuffix("/v1/traces") + "/v1/metrics"
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url, headers=headers, timeout=settings.export_timeout_s),
        export_interval_millis=10_000,
    )
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    # The SDK's own exit hook waits up to 30 s for a dead collector; keep appsdk's deadline.
    atexit.register(provider.shutdown, timeout_millis=int(settings.shutdown_timeout_s * 1000))
    _installed = provider
    return provider
