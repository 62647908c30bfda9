"""A generation through LLMDClient vs the minimal traced httpx call vs plain httpx.

The simulator runs in its own process (``appsdk sim``) so the server does not compete with
the client for the GIL.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import appsdk
from appsdk.batching import BatchExportProcessor
from benchmarks.common import NoOpExporter, paired_ratio, rounds_of, table

MODEL = "sim-llama-3-8b"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "What does llm-d do?"}]}
STREAM_TOKENS = 50  # a 50-chunk stream (plus the role and usage chunks)


@contextlib.contextmanager
def simulator(tokens: int) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "appsdk.cli", "sim", "--port", str(port), "--tokens", str(tokens)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    pipeline = appsdk.configure(local_store="never")
    pipeline.add_exporter(BatchExportProcessor(NoOpExporter(), name="noop"), None)
    tracer = trace.get_tracer("bench")
    with simulator(STREAM_TOKENS) as url:
        plain = httpx.Client(base_url=url)
        instrumented = httpx.Client(base_url=url)
        HTTPXClientInstrumentor.instrument_client(instrumented)
        llmd = appsdk.LLMDClient(base_url=url, retry=appsdk.RetryPolicy(max_attempts=1))
        body = {**BODY, "max_tokens": 16}

        def minimal_traced() -> Any:
            with tracer.start_as_current_span(f"chat {MODEL}"):
                return instrumented.post("/v1/chat/completions", json=body).json()

        variants = {
            "plain httpx": lambda: plain.post("/v1/chat/completions", json=body).json(),
            "minimal traced (span + instrumented httpx)": minimal_traced,
            "LLMDClient.chat": lambda: llmd.chat(
                model=MODEL, messages=BODY["messages"], max_tokens=16
            ),
        }
        samples = rounds_of(variants, calls=20 if quick else 60, rounds=3 if quick else 25)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        stream_samples = _streaming(plain, instrumented, llmd, quick)
        plain.close(), instrumented.close(), llmd.close()
    appsdk.shutdown()
    ratios = {
        "LLMDClient / minimal traced call (target <= 1.15)": paired_ratio(
            samples, "LLMDClient.chat", "minimal traced (span + instrumented httpx)"
        ),
        "LLMDClient added over plain httpx (us)": medians["LLMDClient.chat"]
        - medians["plain httpx"],
        "LLMDClient stream / minimal traced stream, 50 chunks (target <= 1.15)": paired_ratio(
            stream_samples, "LLMDClient.chat(stream=True)", "minimal traced stream"
        ),
        "streaming: added per chunk over plain httpx (us)": (
            statistics.median(stream_samples["LLMDClient.chat(stream=True)"])
            - statistics.median(stream_samples["plain httpx stream"])
        )
        / (STREAM_TOKENS + 2),
    }
    rows = [(name, f"{value:.1f}") for name, value in medians.items()]
    rows += [(name, f"{statistics.median(v):.1f}") for name, v in stream_samples.items()]
    text = table(rows, ("chat call", "median us/call"))
    text += "\n\n" + table([(k, f"{v:.2f}") for k, v in ratios.items()], ("ratio", "value"))
    return text, ratios


def _streaming(
    plain: httpx.Client,
    instrumented: httpx.Client,
    llmd: appsdk.LLMDClient,
    quick: bool,
) -> dict[str, list[float]]:
    """A 50-chunk stream read to the end: plain, minimal traced (a span around an instrumented
    request, each event decoded as JSON as any client must), and LLMDClient."""
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    tracer = trace.get_tracer("bench")

    def read_stream(client: httpx.Client) -> None:
        with connect_sse(client, "POST", "/v1/chat/completions", json=body) as source:
            for event in source.iter_sse():
                if event.data != "[DONE]":
                    json.loads(event.data)

    def minimal_traced_stream() -> None:
        with tracer.start_as_current_span(f"chat {MODEL}"):
            read_stream(instrumented)

    def traced_stream() -> None:
        with llmd.chat(model=MODEL, messages=BODY["messages"], stream=True) as stream:  # type: ignore[union-attr]
            for _ in stream:
                pass

    return rounds_of(
        {
            "plain httpx stream": lambda: read_stream(plain),
            "minimal traced stream": minimal_traced_stream,
            "LLMDClient.chat(stream=True)": traced_stream,
        },
        calls=10 if quick else 30,
        rounds=3 if quick else 15,
    )
