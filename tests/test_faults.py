"""The fault suite: what a user sees, and what is kept, on a bad day."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import appsdk
from appsdk import sim
from appsdk.llmd import (
    LLMDError,
    NoEndpointsError,
    RateLimitedError,
    ResponseError,
    ResponseTooLargeError,
    StreamError,
)
from appsdk.testing import capture_spans
from tests.langfuse_stub import langfuse_stub
from tests.servers import clean_env, otlp_receiver, reserved_port, url_of

SECRET = "sk-lf-do-not-log-me"
MODEL = "sim-llama-3-8b"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["down", "slow", "5xx", "401"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    mode = request.param
    if mode == "down":
        with reserved_port() as refusing:
            yield mode, url_of(refusing)
        return
    options = {"slow": {"delay_s": 0.2}, "5xx": {"status": 503}, "401": {"status": 401}}[mode]
    with otlp_receiver(**options) as receiver:  # type: ignore[arg-type]
        yield mode, receiver.url


def test_tracing_backend_faults_never_reach_the_app(
    backend: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mode, url = backend
    appsdk.configure(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key=SECRET,
        langfuse_base_url=url,
        spool_path=tmp_path / "spool.db",
        max_export_batch_size=50,
        export_timeout_s=2,
    )

    @appsdk.observe()
    def handler(i: int) -> int:
        return i

    with caplog.at_level(logging.WARNING):
        assert [handler(i) for i in range(300)] == list(range(300))
        appsdk.flush(10)
    stats = appsdk.stats()["langfuse"]
    accounted = (
        stats["exported"]
        + stats["spool_pending"]
        + stats["rejected"]
        + stats["dropped_queue_full"]
        + stats["queued"]
    )
    assert accounted == 300, stats
    if mode == "slow":
        assert stats["exported"] == 300
    else:
        assert stats["exported"] == 0
        warnings = [r for r in caplog.records if r.name == "appsdk"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert SECRET not in caplog.text


@pytest.fixture
def one_connection_client() -> Iterator[tuple[appsdk.LLMDClient, sim.Simulator]]:
    with (
        sim.running() as simulator,
        appsdk.LLMDClient(
            base_url=simulator.base_url,
            limits=httpx.Limits(max_connections=1),
            timeout=httpx.Timeout(10, pool=2),
            retry=appsdk.RetryPolicy(max_attempts=1),
            max_response_bytes=50_000,
        ) as client,
    ):
        yield client, simulator


GATEWAY_FAULTS: list[tuple[str, dict[str, str], bool, type[LLMDError]]] = [
    (
        "429 with Retry-After",
        {"x-sim-status": "429", "x-sim-retry-after": "1", "x-sim-error-shape": "picker"},
        False,
        RateLimitedError,
    ),
    (
        "503 no endpoints",
        {
            "x-sim-status": "503",
            "x-sim-error-shape": "picker",
            "x-sim-dropped-reason": "rejected-no-endpoints",
        },
        False,
        NoEndpointsError,
    ),
    ("reset mid-stream", {"x-sim-reset-after": "3"}, True, StreamError),
    ("malformed SSE", {"x-sim-garbage": "sse"}, True, ResponseError),
    ("invalid JSON", {"x-sim-garbage": "json"}, False, ResponseError),
    ("too large", {"x-sim-pad-bytes": "200000"}, False, ResponseTooLargeError),
]


@pytest.mark.parametrize(
    ("fault", "headers", "stream", "kind"), GATEWAY_FAULTS, ids=[f[0] for f in GATEWAY_FAULTS]
)
def test_gateway_faults_are_typed_errors_with_no_leaked_connection(
    one_connection_client: tuple[appsdk.LLMDClient, sim.Simulator],
    fault: str,
    headers: dict[str, str],
    stream: bool,
    kind: type[LLMDError],
) -> None:
    client, _ = one_connection_client
    with capture_spans() as captured:
        with pytest.raises(kind):
            result = client.chat(
                model=MODEL, messages=MESSAGES, stream=stream, extra_headers=headers
            )
            if stream:
                list(result)  # type: ignore[call-overload]
        # with one connection in the pool, a leak would time this call out
        assert client.chat(model=MODEL, messages=MESSAGES).text  # type: ignore[union-attr]
    failed, ok = (o for o in captured.observations() if o.type == "generation")
    assert failed.level == "ERROR" and failed.attributes["error.type"] == kind.__name__
    assert ok.level == "DEFAULT"


EXIT_SCRIPT = """
import sys
import appsdk
url, outbox, store = sys.argv[1], sys.argv[2], sys.argv[3]
p = appsdk.configure(langfuse_public_key="pk-lf-test", langfuse_secret_key="sk-lf-test-secret",
                     langfuse_base_url=url, schedule_delay_ms=60000, spool_path=store)
client = appsdk.FeedbackClient(outbox_path=outbox, backoff_s=(0.01, 0.05))
for i in range(25):
    with appsdk.start_observation(f"pending-{i}") as obs:
        client.submit(trace_id=obs.trace_id, name="helpful", value=True, user_id=f"u{i}")
if sys.argv[4] == "deliver":
    print("flushed" if client.flush(30) else "timeout", flush=True)
"""


def test_exit_flushes_spans_in_time_and_keeps_feedback_for_the_next_start(
    tmp_path: Path,
) -> None:
    env = clean_env()
    outbox, spool = str(tmp_path / "outbox.db"), str(tmp_path / "spool.db")
    with langfuse_stub() as stub:
        stub.score_status = 503
        subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, stub.url, outbox, spool, "exit"],
            check=True,
            env=env,
            timeout=60,
        )
        assert stub.count("/api/public/otel/v1/traces") >= 1  # spans flushed at exit
        assert stub.scores == {}
        stub.score_status = None
        second = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, stub.url, outbox, spool, "deliver"],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )
        assert second.stdout.strip() == "flushed", second.stderr
        # the 25 kept from the first process, and the second process's own 25
        assert len(stub.scores) == 50


def test_16_threads_of_300_calls_each_keep_every_span_once_with_its_parent() -> None:
    @appsdk.observe()
    def child(i: int) -> int:
        return i

    @appsdk.observe()
    def parent(i: int) -> int:
        return child(i)

    # Threads switch every 0.1 ms instead of every 5 ms: calls interleave all along.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with capture_spans() as captured:
            threads = [
                threading.Thread(target=lambda: [parent(i) for i in range(300)]) for _ in range(16)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            observations = captured.observations()
    finally:
        sys.setswitchinterval(switch_interval)
    parents = {o.id: o for o in observations if o.name == "parent"}
    children = [o for o in observations if o.name == "child"]
    assert len(parents) == 4_800 and len(children) == 4_800
    assert len({o.id for o in observations}) == 9_600
    assert all(parents[c.parent_id or ""].trace_id == c.trace_id for c in children)
    assert len({parents[c.parent_id or ""].id for c in children}) == 4_800


async def test_500_concurrent_async_calls_keep_their_parents() -> None:
    @appsdk.observe()
    async def child(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @appsdk.observe()
    async def parent(i: int) -> int:
        await asyncio.sleep(0)
        return await child(i)

    with capture_spans() as captured:
        assert await asyncio.gather(*(parent(i) for i in range(500))) == list(range(500))
        observations = captured.observations()
    parents = {o.id: o for o in observations if o.name == "parent"}
    children = [o for o in observations if o.name == "child"]
    assert len(parents) == 500 and len(children) == 500
    for c in children:
        assert parents[c.parent_id or ""].input == {"args": c.input["args"], "kwargs": {}}
