"""``appsdk.flush()`` says True only when what it waited for arrived; ``stats()`` says where."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import appsdk
from appsdk.pipeline import Pipeline
from tests.servers import otlp_receiver, url_of

_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _spans(pipeline: Pipeline, count: int) -> set[str]:
    ids = set()
    for i in range(count):
        with pipeline.tracer.start_as_current_span(f"s{i}") as span:
            ids.add(f"{span.get_span_context().span_id:016x}")
    return ids


def test_a_refused_backend_makes_flush_false_until_everything_arrived(
    tmp_path: Path, reserved: socket.socket
) -> None:
    pipeline = appsdk.configure(
        otlp_endpoints=(url_of(reserved) + "/v1/traces",),
        spool_path=tmp_path / "spool.db",
        local_store="never",
    )
    made = _spans(pipeline, 5)
    assert not appsdk.flush(5)  # every batch went to the spool
    assert appsdk.stats()["otlp"]["spool_pending"] == 5
    assert not appsdk.flush(1)  # still there: still not delivered
    with otlp_receiver(reserved=reserved) as receiver:
        made |= _spans(pipeline, 3)
        # The worker's probe finds the backend up and the spool drains: no drain_spool() call.
        receiver.wait_for(lambda r: len(r.spans) >= len(made), timeout=30)
        assert appsdk.flush(5)
        received = [span.span_id for span in receiver.spans]
    assert sorted(received) == sorted(made)  # each span once
    stats = appsdk.stats()["otlp"]
    assert stats["exported"] == 8 and stats["spool_pending"] == 0, stats


def test_drain_then_flush_is_true_once_the_backend_is_back(
    tmp_path: Path, reserved: socket.socket
) -> None:
    pipeline = appsdk.configure(
        otlp_endpoints=(url_of(reserved) + "/v1/traces",),
        spool_path=tmp_path / "spool.db",
        local_store="never",
    )
    made = _spans(pipeline, 4)
    assert not appsdk.flush(5)
    with otlp_receiver(reserved=reserved) as receiver:
        assert pipeline.drain_spool(20)
        assert appsdk.flush(5)
    assert sorted(span.span_id for span in receiver.spans) == sorted(made)


def test_a_local_store_that_cannot_be_written_makes_flush_false(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    pipeline = appsdk.configure(store_path=store)
    store.mkdir()  # after the preflight: the store cannot be opened when spans are written
    _spans(pipeline, 2)
    assert not appsdk.flush(5)
    assert appsdk.stats()["local"]["failed_spans"] == 2
    shutil.rmtree(store)  # writable again: the spans of the next flush are stored
    _spans(pipeline, 1)
    assert appsdk.flush(5)
    assert appsdk.stats()["local"]["exported"] == 1


def test_a_pending_rating_makes_flush_false_until_langfuse_takes_it(
    tmp_path: Path, reserved: socket.socket
) -> None:
    appsdk.configure(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-test-secret",
        langfuse_base_url=url_of(reserved),
        spool_path=tmp_path / "spool.db",
        feedback_outbox=tmp_path / "feedback.db",
        local_store="never",
    )
    appsdk.submit_feedback(trace_id=_TRACE_ID, name="helpful", value=True)
    assert not appsdk.flush(1)
    assert appsdk.stats()["feedback"] == {
        "submitted": 1,
        "delivered": 0,
        "pending": 1,
        "rejected": 0,
    }
    with otlp_receiver(reserved=reserved) as langfuse:
        assert appsdk.flush(10)
        scores = [r for r in langfuse.requests if r.path.endswith("/api/public/scores")]
    assert len(scores) == 1
    assert appsdk.stats()["feedback"] == {
        "submitted": 1,
        "delivered": 1,
        "pending": 0,
        "rejected": 0,
    }


def test_without_langfuse_a_rating_is_delivered_to_the_local_store(tmp_path: Path) -> None:
    appsdk.configure(store_path=tmp_path / "traces.db")
    assert "feedback" not in appsdk.stats()  # no rating yet: no feedback client
    appsdk.submit_feedback(trace_id=_TRACE_ID, name="helpful", value=True)
    assert appsdk.flush(5)
    appsdk.shutdown()
    assert appsdk.stats()["feedback"] == {
        "submitted": 1,
        "delivered": 1,
        "pending": 0,
        "rejected": 0,
    }
