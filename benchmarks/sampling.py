"""Sampling: an unsampled decorated call against a sampled one, and the retention bound.

Both variants export to the same loopback OTLP receiver (the sampled one pays its export on
the worker thread; the unsampled one holds its spans in the retention buffer instead).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import appsdk
from appsdk import Sampling
from appsdk import runtime as _runtime
from benchmarks.common import rounds_of, table
from tests.servers import otlp_receiver

PAYLOAD = "x" * 1024
RETENTION_BOUND = 8 * 1024 * 1024


def _decorated() -> Any:
    @appsdk.observe()
    def inner(text: str) -> str:
        return text

    @appsdk.observe()
    def outer(text: str) -> str:
        return inner(text)

    return lambda: outer(PAYLOAD)


def _per_call(ratio: float, endpoint: str, folder: str, calls: int, rounds: int) -> list[float]:
    appsdk.configure(
        otlp_traces_endpoint=endpoint,
        spool_path=Path(folder) / f"spool-{ratio}.db",
        sampling=Sampling(default_ratio=ratio, max_bytes=RETENTION_BOUND),
    )
    samples = rounds_of({"call": _decorated()}, calls=calls, rounds=rounds)["call"]
    appsdk.flush(30)
    return samples


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    calls, rounds = (300, 5) if quick else (2000, 9)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder, otlp_receiver() as receiver:
        sampled: list[float] = []
        unsampled: list[float] = []
        for _ in range(3):  # alternate whole configurations, so drift hits both alike
            sampled += _per_call(1.0, receiver.traces_url, folder, calls, rounds)
            unsampled += _per_call(0.0, receiver.traces_url, folder, calls, rounds)
        # A sustained load of unsampled traces: the buffer must stay within its bound.
        _per_call(0.0, receiver.traces_url, folder, calls * 5, rounds)
        pipeline = _runtime.current()
        assert pipeline is not None and pipeline.retention is not None
        held = pipeline.retention.stats()
        appsdk.shutdown()
    results["sampled call, 1 KB in/out (us)"] = statistics.median(sampled)
    results["unsampled call, held for retention (us)"] = statistics.median(unsampled)
    results["unsampled / sampled (target <= 1)"] = (
        results["unsampled call, held for retention (us)"]
        / results["sampled call, 1 KB in/out (us)"]
    )
    results["retention buffer after a sustained load (MB)"] = held["retained_bytes"] / 2**20
    results["  its bound (MB)"] = RETENTION_BOUND / 2**20
    results["  traces evicted at the bound (counted)"] = held.get("evicted", 0)
    rows = [(name, f"{value:,.3f}") for name, value in results.items()]
    return table(rows, ("sampling", "value")), results
