"""Feedback throughput: submissions per second into the outbox, deliveries to a Langfuse stub."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient
from benchmarks.common import table
from tests.langfuse_stub import langfuse_stub


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    count = 300 if quick else 2000
    with tempfile.TemporaryDirectory() as folder, langfuse_stub() as stub:
        settings = load_settings(**stub.options())
        client = FeedbackClient(
            settings=settings, outbox_path=Path(folder) / "outbox.db", start=False
        )
        started = time.perf_counter()
        for i in range(count):
            client.submit(trace_id="ab" * 16, name=f"rating-{i}", value=i % 5, comment="ok")
        submitted = count / (time.perf_counter() - started)
        started = time.perf_counter()
        assert client.flush(120)
        delivered = count / (time.perf_counter() - started)
        assert len(stub.scores) == count
        client.close()
    rates = {
        "submitted into the outbox (per s)": submitted,
        "delivered to the stub (per s, batches of 50)": delivered,
    }
    return table([(k, f"{v:,.0f}") for k, v in rates.items()], ("feedback", "rate")), rates
