"""Export keeps pace: under sustained load a healthy backend gets spans live, not via the disk."""

from __future__ import annotations

import threading

import appsdk
from tests.servers import OTLPReceiver

PAYLOAD = "x" * 1024
THREADS = 4
# Safety bound only: the load stops when the test has seen what it waits for.
MAX_CALLS_PER_THREAD = 200_000


def _load(stop: threading.Event, made: list[int]) -> None:
    @appsdk.observe()
    def inner(text: str) -> str:
        return text

    @appsdk.observe()
    def outer(text: str) -> str:
        return inner(text)

    calls = 0
    while not stop.is_set() and calls < MAX_CALLS_PER_THREAD:
        outer(PAYLOAD)
        calls += 1
    made.append(calls * 2)


def test_spans_keep_arriving_while_a_sustained_load_runs(receiver: OTLPReceiver) -> None:
    appsdk.configure(otlp_endpoints=(receiver.traces_url,), max_export_batch_size=512)
    stop = threading.Event()
    made: list[int] = []
    threads = [threading.Thread(target=_load, args=(stop, made)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        # Ten batches' worth while every producer is still running: the stall this guards
        # against delivered two batches and then nothing until the load stopped.
        receiver.wait_for_spans(10 * 512, timeout=60)
        assert all(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert appsdk.flush(timeout_s=30)
    stats = appsdk.stats()["otlp"]
    assert stats["spooled"] == 0, stats
    assert stats["spool_pending"] == 0, stats
    # Nothing vanished: every span was delivered or counted as dropped at the queue.
    assert stats["exported"] + stats["dropped_queue_full"] == sum(made), stats
    assert len(receiver.spans) == stats["exported"]
