"""Export under real faults: every answer classified, nothing lost, nothing doubled, no hot loop."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace

import appsdk
from appsdk.backoff import Backoff
from appsdk.batching import BatchExportProcessor
from appsdk.otlp import OTLPHttpExporter
from appsdk.spool import Spool, exporter_key
from tests.servers import OTLPReceiver, ReceivedSpan, otlp_receiver


def _spans(count: int, name: str = "work") -> None:
    tracer = trace.get_tracer("test.faults")
    for i in range(count):
        with tracer.start_as_current_span(name, attributes={"i": i}):
            pass


def _configure(receiver: OTLPReceiver, tmp_path: Path, **options: object) -> None:
    options.setdefault("max_export_batch_size", 10)
    appsdk.configure(
        otlp_endpoints=(receiver.traces_url,), spool_path=str(tmp_path / "spool.db"), **options
    )


def _delivered_ids(receiver: OTLPReceiver) -> list[str]:
    return [span.span_id for span in receiver.spans]


def _answers(*statuses: int, then: int = 200, **headers: str) -> Callable[..., tuple[int, dict]]:
    """A responder giving ``statuses`` in turn, then ``then`` for ever."""
    queue = list(statuses)
    lock = threading.Lock()

    def answer(spans: list[ReceivedSpan]) -> tuple[int, dict[str, str]]:
        with lock:
            status = queue.pop(0) if queue else then
        extra = dict(headers) if status in (301, 302, 307, 308) else {}
        return status, extra

    return answer


@pytest.mark.parametrize("status", [404, 302, 307, 503, 408])
def test_a_transient_answer_is_retried_and_everything_arrives_once(
    status: int, tmp_path: Path
) -> None:
    with otlp_receiver() as receiver:
        receiver.responder = _answers(status, status, location="http://elsewhere.invalid/x")
        _configure(receiver, tmp_path)
        _spans(30)
        assert not appsdk.flush()  # the first batch waits in the spool
        from appsdk import runtime

        current = runtime.current()
        assert current is not None and current.drain_spool(timeout_s=20)
        assert appsdk.flush()
        stats = appsdk.stats()["otlp"]
    delivered = _delivered_ids(receiver)
    assert len(delivered) == 30 and len(set(delivered)) == 30, stats
    assert stats["rejected"] == 0


def test_a_batch_too_large_is_split_down_to_what_the_backend_takes(tmp_path: Path) -> None:
    def at_most_three(spans: list[ReceivedSpan]) -> tuple[int, dict[str, str]]:
        return (413 if len(spans) > 3 else 200), {}

    with otlp_receiver(responder=at_most_three) as receiver:
        _configure(receiver, tmp_path)
        _spans(10)
        assert not appsdk.flush()  # its halves wait in the spool
        from appsdk import runtime

        current = runtime.current()
        assert current is not None and current.drain_spool(timeout_s=20)
        assert appsdk.flush()
        stats = appsdk.stats()["otlp"]
    delivered = _delivered_ids(receiver)
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == 10, stats
    assert stats["rejected"] == 0


def test_a_single_span_too_large_is_rejected_with_the_reason(tmp_path: Path) -> None:
    with otlp_receiver(status=413) as receiver:
        _configure(receiver, tmp_path, max_export_batch_size=1)
        _spans(1)
        assert not appsdk.flush()  # rejected: not delivered
        stats = appsdk.stats()["otlp"]
    assert stats["rejected"] == 1
    status = Spool(tmp_path / "spool.db").status()
    assert any("413" in reason for entry in status for _, reason in entry.rejected)


def test_a_spool_that_cannot_delete_never_resends_in_a_loop(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        destination = exporter_key("otlp", receiver.traces_url)
        spool = Spool(tmp_path / "spool.db")
        exporter = OTLPHttpExporter(name="otlp", endpoint=receiver.traces_url)
        # Three batches an earlier outage left behind.
        for _ in range(3):
            _spool_one_span(spool, exporter, destination)

        def read_only(batch_id: int) -> None:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        spool.remove = read_only  # type: ignore[method-assign]
        processor = BatchExportProcessor(
            exporter, name="otlp", spool=spool, spool_key=destination, max_export_batch_size=10
        )
        assert processor.drain_spool(timeout_s=10)
        receiver.wait_for_spans(3)
        sent_before = len(receiver.requests)
        # Live export still works while the spool is broken, and nothing is sent again.
        processor.on_end(_one_readable_span())
        assert processor.force_flush(5000)
        processor.shutdown(timeout_s=1.0)
    assert len(receiver.requests) == sent_before + 1
    assert processor.stats.spool_delete_failures == 3


def _spool_one_span(spool: Spool, exporter: OTLPHttpExporter, destination: object) -> None:
    spool.put(destination, exporter.encode([_one_readable_span()]), 1)  # type: ignore[arg-type]


def _one_readable_span() -> object:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test.faults")
    span = tracer.start_span("spooled")
    span.end()
    return span


def test_processes_sharing_a_spool_send_each_batch_once(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        destination = exporter_key("otlp", receiver.traces_url)
        path = tmp_path / "spool.db"
        seed = Spool(path)
        exporter = OTLPHttpExporter(name="otlp", endpoint=receiver.traces_url)
        for _ in range(40):
            _spool_one_span(seed, exporter, destination)
        # Two processors, each with its own connection to the file, as two workers would be.
        drainers = [
            BatchExportProcessor(
                OTLPHttpExporter(name="otlp", endpoint=receiver.traces_url),
                name="otlp",
                spool=Spool(path),
                spool_key=destination,
            )
            for _ in range(2)
        ]
        threads = [threading.Thread(target=d.drain_spool, args=(20,)) for d in drainers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for drainer in drainers:
            drainer.shutdown(timeout_s=1.0)
    delivered = _delivered_ids(receiver)
    assert len(delivered) == 40 and len(set(delivered)) == 40
    assert seed.pending(destination) == 0


def test_retry_after_is_honoured_by_an_explicit_drain(tmp_path: Path) -> None:
    with otlp_receiver(status=429) as receiver:
        receiver.responder = lambda spans: (429, {"retry-after": "30"})
        _configure(receiver, tmp_path)
        _spans(5)
        assert not appsdk.flush()  # the batch waits in the spool
        from appsdk import runtime

        current = runtime.current()
        assert current is not None
        # Each drain waits out its whole timeout: the backoff lets no probe through.
        assert not current.drain_spool(timeout_s=0.3)
        assert not current.drain_spool(timeout_s=0.3)
    # The first answer said "not for 30 s": no flush, however eager, asks again before that.
    assert len(receiver.requests) == 1


def test_the_backoff_stays_at_its_ceiling_however_long_the_outage() -> None:
    now = [0.0]
    backoff = Backoff(first_s=0.5, longest_s=30.0, jitter=0.0, clock=lambda: now[0])
    for _ in range(5000):
        backoff.failed()
    assert backoff.until == pytest.approx(30.0)
    backoff.failed(retry_after_s=120.0)
    assert backoff.until == pytest.approx(120.0)
    backoff.probe_now()
    assert not backoff.may_probe()  # never before the server's Retry-After
    backoff.recovered()
    assert backoff.may_probe() and not backoff.down


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_configure_is_clean_to_repeat(receiver: OTLPReceiver, tmp_path: Path) -> None:
    _configure(receiver, tmp_path)
    _spans(3)
    threads, descriptors = threading.active_count(), _open_descriptors()
    for _ in range(30):
        _configure(receiver, tmp_path)
        _spans(3)
    appsdk.flush()
    assert threading.active_count() <= threads + 2
    assert _open_descriptors() <= descriptors + 4


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("nan", None),
        ("soon", None),
        (None, None),
        ("99999", 3600.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_one_way_everywhere(header: str | None, seconds: float | None) -> None:
    from appsdk.backoff import retry_after_s

    assert retry_after_s(header) == seconds
