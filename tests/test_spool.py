"""Nothing lost on a bad day: outages, a SIGKILL, a backend that never answers, long outages."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import appsdk
from appsdk.cli import app as cli
from appsdk.spool import Spool, exporter_key
from tests.servers import clean_env, otlp_receiver, url_of

PRODUCER = """
import json, sys
import appsdk
url, spool, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
p = appsdk.configure(otlp_traces_endpoint=url, spool_path=spool, export_timeout_s=30,
                     shutdown_timeout_s=2, max_export_batch_size=20)
ids = []
for i in range(count):
    with p.tracer.start_as_current_span(f"s{i}") as span:
        ids.append(f"{span.get_span_context().span_id:016x}")
print(json.dumps(ids), flush=True)
if mode == "flush-then-wait":
    p.flush(10)
    print("flushed", flush=True)
    sys.stdin.readline()   # the parent SIGKILLs us here
elif mode == "drain":
    ok = p.drain_spool(30)
    print("drained" if ok else "not drained", flush=True)
"""


def test_refused_then_recovered_with_a_sigkill_between_loses_nothing(
    tmp_path: Path, reserved: socket.socket
) -> None:
    spool = str(tmp_path / "spool.db")
    url = url_of(reserved) + "/v1/traces"
    first = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, url, spool, "100", "flush-then-wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert first.stdout is not None
    produced = json.loads(first.stdout.readline())
    assert first.stdout.readline().strip() == "flushed"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    first.stdout.close()
    assert first.stdin is not None
    first.stdin.close()
    assert Spool(spool).pending_spans(exporter_key("otlp", url, {})) == 100
    with otlp_receiver(reserved=reserved) as receiver:
        second = subprocess.run(
            [sys.executable, "-c", PRODUCER, url, spool, "30", "drain"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        lines = second.stdout.splitlines()
        assert lines[1] == "drained", second.stderr
        produced += json.loads(lines[0])
        received = {s.span_id for s in receiver.wait_for_spans(130)}
    assert set(produced) <= received
    assert Spool(spool).pending_spans(exporter_key("otlp", url, {})) == 0


def test_a_backend_that_never_answers_exits_in_time_and_loses_nothing(tmp_path: Path) -> None:
    spool = str(tmp_path / "spool.db")
    with otlp_receiver(hang=True) as receiver:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-c", PRODUCER, receiver.traces_url, spool, "50", "exit"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        elapsed = time.monotonic() - started
        assert run.returncode == 0, run.stderr
        produced = json.loads(run.stdout.splitlines()[0])
        # the interpreter start and import are included; the shutdown budget is 2 s
        assert elapsed < 2 + 5, elapsed
        assert Spool(spool).pending_spans(exporter_key("otlp", receiver.traces_url, {})) == 50
        receiver.hang = False
        drained = subprocess.run(
            [sys.executable, "-c", PRODUCER, receiver.traces_url, spool, "0", "drain"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert "drained" in drained.stdout, drained.stderr
        assert set(produced) <= {s.span_id for s in receiver.spans}


def test_rejections_are_kept_with_the_reason_and_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with otlp_receiver(status=400) as receiver:
        pipeline = appsdk.configure(
            otlp_traces_endpoint=receiver.traces_url, spool_path=tmp_path / "spool.db"
        )
        with caplog.at_level(logging.WARNING, logger="appsdk"):
            for _ in range(3):
                with pipeline.tracer.start_as_current_span("x"):
                    pass
                appsdk.flush()
        assert appsdk.stats()["otlp"]["rejected"] == 3
        assert len([r for r in caplog.records if r.name == "appsdk"]) == 1
        result = CliRunner().invoke(cli, ["spool", "status", "--path", str(tmp_path / "spool.db")])
        assert "rejected" in result.output and "HTTP 400" in result.output
        assert len(receiver.requests) == 3  # never retried


def test_the_spool_stays_within_its_bounds_and_counts_evictions(tmp_path: Path) -> None:
    now = [1000.0]
    evicted: list[int] = []
    spool = Spool(
        tmp_path / "spool.db",
        max_bytes=10_000,
        max_age_s=60,
        on_evict=lambda key, spans: evicted.append(spans),
        clock=lambda: now[0],
    )
    key = exporter_key("otlp", "http://127.0.0.1:4318/v1/traces")
    for _ in range(50):
        spool.put(key, b"x" * 1000, spans=10)
        assert spool.total_bytes() <= 10_000
    assert sum(evicted) == 400  # 40 of 50 batches, the oldest first
    remaining = spool.oldest(key, limit=100)
    assert len(remaining) == 10 and remaining[0].id == 41
    now[0] += 61
    spool.put(key, b"y" * 10, spans=1)
    assert [b.body for b in spool.oldest(key, limit=100)] == [b"y" * 10]
    assert sum(evicted) == 500


def test_a_long_outage_is_bounded_and_counted_in_stats(
    tmp_path: Path, reserved: socket.socket
) -> None:
    url = url_of(reserved) + "/v1/traces"
    pipeline = appsdk.configure(
        otlp_traces_endpoint=url,
        spool_path=tmp_path / "spool.db",
        spool_max_bytes=20_000,
        max_export_batch_size=10,
    )
    for round_ in range(30):
        for i in range(10):
            with pipeline.tracer.start_as_current_span(f"outage-{round_}-{i}" + "x" * 200):
                pass
        appsdk.flush()
    stats = appsdk.stats()["otlp"]
    assert stats["spool_evicted"] > 0
    assert stats["spooled"] == 300 and stats["spool_pending"] + stats["spool_evicted"] == 300
    assert Spool(tmp_path / "spool.db").total_bytes() <= 20_000


def test_spool_flush_on_the_command_line_sends_what_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reserved: socket.socket
) -> None:
    spool = tmp_path / "spool.db"
    url = url_of(reserved) + "/v1/traces"
    pipeline = appsdk.configure(otlp_traces_endpoint=url, spool_path=spool)
    for i in range(5):
        with pipeline.tracer.start_as_current_span(f"waiting-{i}"):
            pass
    appsdk.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
    monkeypatch.setenv("APPSDK_SPOOL_PATH", str(spool))
    status = CliRunner().invoke(cli, ["spool", "status"])
    assert f"otlp {url} (identity " in status.output
    assert "5 spans" in status.output and "this configuration's" in status.output
    with otlp_receiver(reserved=reserved) as receiver:
        result = CliRunner().invoke(cli, ["spool", "flush", "--timeout", "20"])
        assert result.exit_code == 0, result.output
        assert "otlp: sent 5 spooled spans, 0 still waiting" in result.output
        assert {s.name for s in receiver.wait_for_spans(5)} == {f"waiting-{i}" for i in range(5)}
