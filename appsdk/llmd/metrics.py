"""GenAI client metrics through the OpenTelemetry metrics API.

Without a MeterProvider the API hands out no-op instruments, so this costs next to nothing
until the application (or ``appsdk.configure`` with an OTLP endpoint, at the first
measurement) installs one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from opentelemetry import metrics

from appsdk.metrics_export import install_pending

__all__ = ["record_duration", "record_first_chunk", "record_tokens"]

_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


def _instruments() -> dict[str, Any]:
    install_pending()  # the provider configure() asked for, at the first measurement
    return _created()


@cache
def _created() -> dict[str, Any]:
    meter = metrics.get_meter("appsdk")
    return {
        "tokens": meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS),
        ),
        "duration": meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        ),
        "first_chunk": meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        ),
    }


def record_tokens(attributes: dict[str, str], input_tokens: int, output_tokens: int) -> None:
    histogram = _instruments()["tokens"]
    histogram.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
    histogram.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})


def record_duration(attributes: dict[str, str], seconds: float) -> None:
    _instruments()["duration"].record(seconds, attributes)


def record_first_chunk(attributes: dict[str, str], seconds: float) -> None:
    _instruments()["first_chunk"].record(seconds, attributes)
