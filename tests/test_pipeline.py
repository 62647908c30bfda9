from __future__ import annotations

import base64
import gzip
import logging
import resource
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from typer.testing import CliRunner

import appsdk
from appsdk import sim
from appsdk.cli import app
from appsdk.store import TraceStore
from tests.servers import OTLPReceiver, clean_env, otlp_receiver


def _tracer() -> trace.Tracer:
    pipeline = appsdk.runtime.current()
    assert pipeline is not None
    return pipeline.tracer


def _nested_trace() -> tuple[str, list[str]]:
    tracer = _tracer()
    with tracer.start_as_current_span(
        "rag", attributes={"langfuse.observation.type": "chain"}
    ) as root:
        with tracer.start_as_current_span("retrieve") as child:
            child.set_attribute("langfuse.observation.type", "retriever")
            with tracer.start_as_current_span("embed"):
                pass
        with tracer.start_as_current_span("generate") as gen:
            gen.set_attributes(
                {
                    "langfuse.observation.type": "generation",
                    "langfuse.observation.model.name": "llama-3-8b",
                    "langfuse.observation.usage_details": '{"input": 12, "output": 5}',
                    "langfuse.observation.prompt.name": "qa",
                    "langfuse.observation.prompt.version": 3,
                }
            )
    ctx = root.get_span_context()
    return f"{ctx.trace_id:032x}", [f"{ctx.span_id:016x}"]


def test_langfuse_export_carries_path_auth_ingestion_version_gzip_and_attributes(
    receiver: OTLPReceiver,
) -> None:
    appsdk.configure(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-secret",
        langfuse_base_url=receiver.url,
        environment="staging",
        release="1.2.3",
    )
    trace_id, _ = _nested_trace()
    assert appsdk.flush()
    spans = receiver.wait_for_spans(4)
    request = receiver.requests[0]
    assert request.path == "/api/public/otel/v1/traces"
    expected = base64.b64encode(b"pk-lf-test:sk-lf-secret").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert request.headers["content-encoding"] == "gzip"
    assert gzip.decompress(request.raw_body) == request.body
    assert {s.trace_id for s in spans} == {trace_id}
    generation = next(s for s in spans if s.name == "generate")
    assert generation.attributes["langfuse.observation.prompt.version"] == 3  # an int, not "3"
    assert generation.attributes["langfuse.environment"] == "staging"
    assert generation.attributes["langfuse.release"] == "1.2.3"
    by_id = {s.span_id: s for s in spans}
    assert by_id[generation.parent_span_id].name == "rag"  # type: ignore[index]


def test_spans_of_unrelated_instrumentation_do_not_go_to_langfuse(receiver: OTLPReceiver) -> None:
    appsdk.configure(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-1",
        langfuse_base_url=receiver.url,
    )
    with trace.get_tracer("some.db.driver").start_as_current_span("SELECT"):
        pass
    with _tracer().start_as_current_span("mine"):
        pass
    assert appsdk.flush()
    assert [s.name for s in receiver.wait_for_spans(1)] == ["mine"]


def test_dual_export_delivers_the_same_span_ids_to_both_receivers(receiver: OTLPReceiver) -> None:
    with otlp_receiver() as second:
        appsdk.configure(
            otlp_traces_endpoint=receiver.traces_url,
            otlp_headers="x-collector-key=c1",
            otlp_endpoints=(second.traces_url,),
        )
        _nested_trace()
        assert appsdk.flush()
        first_ids = {s.span_id for s in receiver.wait_for_spans(4)}
        second_ids = {s.span_id for s in second.wait_for_spans(4)}
        assert first_ids == second_ids and len(first_ids) == 4
        assert receiver.requests[0].headers["x-collector-key"] == "c1"
        assert "x-collector-key" not in second.requests[0].headers


def test_collector_headers_never_reach_langfuse(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with otlp_receiver() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=c1")
        appsdk.configure(
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-1",
            langfuse_base_url=receiver.url,
        )
        _nested_trace()
        assert appsdk.flush()
        receiver.wait_for_spans(4)
        collector.wait_for_spans(4)
        assert "x-collector-key" not in receiver.requests[0].headers
        assert collector.requests[0].headers["x-collector-key"] == "c1"


def test_local_store_round_trips_a_nested_trace_and_the_cli_shows_it(store_path: Path) -> None:
    appsdk.configure(store_path=store_path)
    trace_id, _ = _nested_trace()
    assert appsdk.flush()
    spans = TraceStore(store_path).spans(trace_id)
    parents = {
        s.name: next((p.name for p in spans if p.span_id == s.parent_span_id), None) for s in spans
    }
    assert parents == {"rag": None, "retrieve": "rag", "embed": "retrieve", "generate": "rag"}

    result = CliRunner().invoke(app, ["traces", "show", "last", "--db", str(store_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert trace_id in lines[0]
    assert any("rag [chain]" in line for line in lines)
    generate = next(line for line in lines if "generate [generation]" in line)
    assert "model llama-3-8b" in generate and "tokens 12 in / 5 out" in generate
    assert "prompt qa v3" in generate
    # nesting is shown by indentation: embed sits deeper than retrieve
    indent = {
        name: next(line.index(name) for line in lines if f"{name} [" in line)
        for name in ("rag", "retrieve", "embed")
    }
    assert indent["rag"] < indent["retrieve"] < indent["embed"]


def test_cli_says_what_to_do_when_there_is_no_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["traces", "show", "last", "--db", str(tmp_path / "no.db")])
    assert result.exit_code == 1
    assert "run a traced program first" in result.output
    assert "Traceback" not in result.output


def test_several_processes_write_one_store(store_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import appsdk, sys\n"
        "p = appsdk.configure(store_path=sys.argv[1])\n"
        "for i in range(200):\n"
        "    with p.tracer.start_as_current_span('s'): pass\n"
        "appsdk.shutdown()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store_path)]) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert TraceStore(store_path).count_spans() == 600


def _rss_mb() -> float:
    """The resident set now (not ``ru_maxrss``, the peak, which earlier tests already raised)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * resource.getpagesize() / 2**20


def test_a_backend_that_never_answers_costs_the_app_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with otlp_receiver(hang=True) as blackhole:
        appsdk.configure(
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-topsecret",
            langfuse_base_url=blackhole.url,
            max_queue_size=200,
            max_export_batch_size=50,
            export_timeout_s=30,
        )
        tracer = _tracer()
        for _ in range(200):  # warm up, then measure growth
            with tracer.start_as_current_span("warm"):
                pass
        before = _rss_mb()
        started = time.monotonic()
        for i in range(1000):
            with tracer.start_as_current_span("call", attributes={"i": i}):
                pass
        elapsed = time.monotonic() - started
        after = _rss_mb()
        # the calls never waited on the backend (one blocked export would take 30 s)
        assert elapsed < 10
        assert after - before < 50
        started = time.monotonic()
        appsdk.shutdown(timeout_s=1.0)
        assert time.monotonic() - started < 3.0
        stats = appsdk.stats()["langfuse"]
        assert stats["exported"] == 0
        # the hung request holds only the sender: spans go to the spool; what a tight loop
        # outran the bounded queue with is counted, none is unaccounted for
        assert stats["spooled"] > 0
        assert stats["spooled"] + stats["dropped_queue_full"] + stats["dropped_at_shutdown"] == 1200
    assert "topsecret" not in caplog.text


def test_a_rejecting_backend_gives_one_clear_warning_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with otlp_receiver(status=401) as rejecting:
        appsdk.configure(
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-topsecret",
            langfuse_base_url=rejecting.url,
        )
        with caplog.at_level(logging.WARNING, logger="appsdk"):
            for _ in range(3):
                with _tracer().start_as_current_span("s"):
                    pass
                appsdk.flush()
        warnings = [r for r in caplog.records if r.name == "appsdk"]
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert "401" in message and "LANGFUSE_SECRET_KEY" in message
        assert "topsecret" not in caplog.text
        assert appsdk.stats()["langfuse"]["export_failures"] == 3


def test_shutdown_at_exit_flushes_pending_spans(receiver: OTLPReceiver, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import appsdk, sys\n"
        "p = appsdk.configure(otlp_traces_endpoint=sys.argv[1], schedule_delay_ms=60000)\n"
        "for i in range(10):\n"
        "    with p.tracer.start_as_current_span('pending'): pass\n"
    )
    env = clean_env(APPSDK_METRICS="false")
    subprocess.run(
        [sys.executable, "-c", code, receiver.traces_url], check=True, env=env, timeout=60
    )
    assert len(receiver.wait_for_spans(10)) == 10


def test_stats_are_empty_before_configure(
    monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    # As in a process that never configured: no pipeline, and none shut down earlier.
    monkeypatch.setattr(appsdk.runtime, "_retired", None)
    assert appsdk.stats() == {}
    appsdk.configure(local_store="never", otlp_endpoints=(receiver.traces_url,))
    assert set(appsdk.stats()) == {"otlp", "recorder", "incoming"}


def test_configure_again_applies_new_settings_or_says_why_not(
    receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    appsdk.configure(service_name="first", local_store="never")
    appsdk.configure(service_name="second", otlp_endpoints=(receiver.traces_url,))
    with appsdk.start_observation("after"):
        pass
    assert appsdk.flush()
    (span,) = receiver.wait_for_spans(1)
    # The new exporter applies; the service name cannot, and the warning says why.
    assert span.name == "after"
    assert "'second' does not apply" in caplog.text and "restart" in caplog.text


def test_a_stream_abandoned_without_with_is_exported_at_shutdown(tmp_path: Path) -> None:
    import subprocess
    import sys

    from appsdk.store import TraceStore

    # As in a notebook cell or at module level: break out of a stream and never close it.
    code = (
        "import sys, appsdk\n"
        "appsdk.configure(store_path=sys.argv[2])\n"
        "client = appsdk.LLMDClient(base_url=sys.argv[1])\n"
        "stream = client.chat(model='llama-3-8b', messages=[{'role': 'user', 'content': 'hi'}],"
        " stream=True)\n"
        "for chunk in stream:\n"
        "    break\n"
    )
    env = clean_env()
    store = tmp_path / "traces.db"
    with sim.running() as simulator:
        subprocess.run(
            [sys.executable, "-c", code, simulator.base_url, str(store)],
            check=True,
            env={**env, "APPSDK_METRICS": "false"},
            timeout=60,
        )
    traces = TraceStore(store)
    spans = [s for t in traces.list_traces() for s in traces.spans(t.trace_id)]
    (generation,) = [s for s in spans if s.name == "chat llama-3-8b"]
    assert generation.attributes["appsdk.incomplete"] is True
    assert generation.attributes["langfuse.observation.level"] == "WARNING"
