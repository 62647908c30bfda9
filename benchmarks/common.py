"""Timing helpers: interleaved rounds, medians, and a no-op exporter."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class NoOpExporter(SpanExporter):
    """Accepts every batch and does nothing: measures the caller's cost, not the network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@dataclass
class Result:
    name: str
    per_call_us: float


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def rounds_of(
    variants: dict[str, Callable[[], object]], *, calls: int, rounds: int
) -> dict[str, list[float]]:
    """Per-call microseconds of each variant, round by round, the variants taking turns."""
    for fn in variants.values():  # warm up caches, queues and lazy imports
        per_call_us(fn, max(1, calls // 10))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(per_call_us(fn, calls))
    return samples


def interleaved(
    variants: dict[str, Callable[[], object]], *, calls: int, rounds: int
) -> dict[str, float]:
    """Median per-call microseconds of each variant, the variants taking turns each round."""
    samples = rounds_of(variants, calls=calls, rounds=rounds)
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median of per-round ratios: each pair ran back to back, so load drift cancels."""
    pairs = zip(samples[numerator], samples[denominator], strict=True)
    return statistics.median(n / d for n, d in pairs)


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
