"""Export throughput (spans per second) and memory with the backend blackholed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import appsdk
from benchmarks.common import table
from benchmarks.peers import receiver
from tests.servers import otlp_receiver

MEMORY_SCRIPT = """
import resource, sys
import appsdk
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
p = appsdk.configure(otlp_traces_endpoint=sys.argv[1], spool_path=sys.argv[2],
                     export_timeout_s=60, shutdown_timeout_s=0.5)
tracer = p.tracer
for _ in range(2000):
    with tracer.start_as_current_span("warm"): pass
before = rss_mb()
for i in range(100_000):
    with tracer.start_as_current_span("span", attributes={"i": i}): pass
after = rss_mb()
appsdk.shutdown()
stats = appsdk.stats()["otlp"]
print(f"{before:.1f} {after:.1f} {stats['dropped_queue_full']} {stats['spooled']}")
"""


def _throughput(count: int, **options: object) -> float:
    pipeline = appsdk.configure(**options)  # type: ignore[arg-type]
    tracer = pipeline.tracer
    started = time.perf_counter()
    for i in range(count):
        with tracer.start_as_current_span("span", attributes={"i": i}):
            pass
    assert appsdk.flush(120)
    elapsed = time.perf_counter() - started
    exported = sum(s["exported"] for s in appsdk.stats().values())
    appsdk.shutdown()
    assert exported == count, appsdk.stats()
    return count / elapsed


def _bare_otel_throughput(count: int, url: str) -> float:
    """The same loop through a bare OpenTelemetry SDK provider and its own OTLP exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=url), max_queue_size=count)
    )
    tracer = provider.get_tracer("bench")
    started = time.perf_counter()
    for i in range(count):
        with tracer.start_as_current_span("span", attributes={"i": i}):
            pass
    assert provider.force_flush(120_000)
    elapsed = time.perf_counter() - started
    provider.shutdown()
    return count / elapsed


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    count = 5_000 if quick else 50_000
    results: dict[str, float] = {}
    # The receiver runs in a process of its own (as a collector would), so decoding what each
    # exporter sends costs neither of them.
    with tempfile.TemporaryDirectory() as folder, receiver() as endpoint:
        traces_url = endpoint + "/v1/traces"
        results["to an OTLP receiver (spans/s)"] = _throughput(
            count,
            otlp_traces_endpoint=traces_url,
            spool_path=Path(folder) / "s.db",
            max_queue_size=count,
        )
        results["to the local store (spans/s)"] = _throughput(
            count, store_path=Path(folder) / "traces.db", max_queue_size=count
        )
        results["bare OTel SDK to the same receiver (spans/s)"] = _bare_otel_throughput(
            count, traces_url
        )
        results["appsdk / bare OTel export capacity (target >= 1)"] = (
            results["to an OTLP receiver (spans/s)"]
            / results["bare OTel SDK to the same receiver (spans/s)"]
        )
    with tempfile.TemporaryDirectory() as folder, otlp_receiver(hang=True) as blackhole:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, blackhole.traces_url, f"{folder}/spool.db"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        ).stdout.split()
    before, after, dropped, spooled = float(out[0]), float(out[1]), int(out[2]), int(out[3])
    results["RSS growth after 100,000 spans, backend blackholed (MB)"] = after - before
    results["  spans kept in the on-disk spool"] = spooled
    results["  spans dropped because a tight loop outran export (counted)"] = dropped
    rows = [(name, f"{value:,.1f}") for name, value in results.items()]
    return table(rows, ("export", "value")), results
