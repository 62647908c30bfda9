"""Sampling to a budget keeps what matters: failures, slow calls and badly rated answers."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import appsdk
from appsdk import runtime as _runtime
from appsdk import sim
from appsdk.sampling import (
    DECISION_ATTRIBUTE,
    KEPT_ATTRIBUTE,
    FeedbackRule,
    Retention,
    Sampling,
    SamplingRule,
    keeps,
)
from appsdk.testing import capture_spans

ROOT = Path(__file__).resolve().parent.parent
TRACES = 1000


def test_rules_failures_and_bad_ratings_are_kept_and_the_rest_sampled_at_the_ratio() -> None:
    sampling = Sampling(
        default_ratio=0.1,
        rules=[SamplingRule(user_id="vip", ratio=1.0)],
        negative_feedback=["helpful == 0"],
    )
    now = [0.0]
    trace_ids: list[str] = []
    with (
        sim.running(exporter="appsdk") as simulator,
        capture_spans(sampling=sampling) as captured,
        appsdk.LLMDClient(base_url=simulator.base_url) as client,
    ):
        pipeline = _runtime.current()
        assert pipeline is not None and pipeline.retention is not None
        pipeline.retention.clock = lambda: now[0]

        @appsdk.observe()
        def handle(i: int) -> str:
            trace_ids.append(appsdk.get_current_trace_id() or "")
            if i % 10 == 3:
                client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "q"}])
            if i % 20 == 7:
                raise ValueError("the retriever failed")
            return "answer"

        for i in range(TRACES):
            now[0] += 0.01
            user = "vip" if i % 20 == 0 else f"user-{i}"
            with appsdk.trace_attributes(user_id=user), contextlib.suppress(ValueError):
                handle(i)
        vip = {trace_ids[i] for i in range(TRACES) if i % 20 == 0}
        failing = {trace_ids[i] for i in range(TRACES) if i % 20 == 7}
        rated = [i for i in range(TRACES) if i % 33 == 5][:30]
        now[0] += 60.0  # the ratings come a minute after the answers
        for i in rated:
            appsdk.submit_feedback(trace_id=trace_ids[i], name="helpful", value=False)
        appsdk.flush()
        exported = {f"{span.context.trace_id:032x}" for span in captured.spans}
        kept = [s for s in captured.spans if (s.attributes or {}).get(KEPT_ATTRIBUTE)]
        gateway_flags = {
            request.headers["traceparent"].split("-")[1]: request.headers["traceparent"][-2:]
            for request in simulator.received
        }
        stats = appsdk.stats()["sampling"]

    negative = {trace_ids[i] for i in rated}
    assert len(failing) == 50 and len(negative) == 30 and len(vip) == 50
    assert failing <= exported and negative <= exported and vip <= exported
    others = set(trace_ids) - failing - negative - vip
    sampled_others = len(others & exported)
    expected, sigma = 0.1 * len(others), math.sqrt(len(others) * 0.1 * 0.9)
    assert abs(sampled_others - expected) <= 4 * sigma, (sampled_others, expected)
    # Every exported "other" was kept by the head decision itself, deterministically.
    assert all(keeps(0.1, int(t, 16)) for t in others & exported)
    # The gateway got the head decision in traceparent's sampled flag.
    assert len(gateway_flags) == 100
    for trace_id, flags in gateway_flags.items():
        ratio = 1.0 if trace_id in vip else 0.1
        assert (int(flags, 16) & 1) == keeps(ratio, int(trace_id, 16))
    # Kept traces say why, to the backend and in Langfuse's tags.
    assert {s.attributes[KEPT_ATTRIBUTE] for s in kept} <= {"error", "feedback"}
    for span in kept:
        reason = span.attributes[KEPT_ATTRIBUTE]
        assert f"kept:{reason}" in span.attributes["langfuse.trace.tags"]
    assert stats["sampled"] + stats["not_sampled"] == TRACES
    dropped_then_rated = {t for t in negative - failing - vip if not keeps(0.1, int(t, 16))}
    assert stats["promoted_feedback"] == len(dropped_then_rated)
    assert stats["promoted_error"] == len({t for t in failing if not keeps(0.1, int(t, 16))})


def _ended_span(name: str = "work", attributes: dict[str, object] | None = None) -> object:
    span = TracerProvider().get_tracer("test.sampling").start_span(name, attributes=attributes)
    span.end()
    return span


def test_the_retention_buffer_stays_within_its_bound_and_counts_what_it_loses() -> None:
    now = [0.0]
    exported: list[object] = []
    retention = Retention(
        Sampling(default_ratio=0.0, max_bytes=50_000, window_s=600),
        exported.append,
        clock=lambda: now[0],
    )
    for _ in range(2_000):
        retention.on_end(_ended_span(attributes={"text": "x" * 1000}))  # type: ignore[arg-type]
        assert retention.stats()["retained_bytes"] <= 50_000
    stats = retention.stats()
    assert stats["evicted"] > 0 and stats["retained"] + stats["evicted"] == 2_000
    now[0] += 601
    assert retention.stats()["retained"] == 0
    assert retention.stats()["expired"] == 2_000 - stats["evicted"]
    assert exported == []


def test_a_rating_after_the_window_keeps_nothing() -> None:
    now = [0.0]
    exported: list[object] = []
    retention = Retention(
        Sampling(default_ratio=0.0, window_s=60, negative_feedback=["rating <= 2"]),
        exported.append,
        clock=lambda: now[0],
    )
    span = _ended_span()
    retention.on_end(span)  # type: ignore[arg-type]
    trace_id = f"{span.context.trace_id:032x}"  # type: ignore[attr-defined]
    assert not retention.feedback(trace_id, "rating", 5)
    now[0] += 61
    assert not retention.feedback(trace_id, "rating", 1)
    assert exported == [] and retention.stats()["expired"] == 1


def test_a_slow_span_keeps_its_trace() -> None:
    exported: list[object] = []
    retention = Retention(
        Sampling(default_ratio=0.0, latency_threshold_s=0.000_001), exported.append
    )
    retention.on_end(_ended_span())  # type: ignore[arg-type]
    assert len(exported) == 1
    assert exported[0].attributes[KEPT_ATTRIBUTE] == "slow"  # type: ignore[attr-defined]
    assert exported[0].context.trace_flags.sampled  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rule", "name", "value", "negative"),
    [
        ("helpful == 0", "helpful", False, True),
        ("helpful == 0", "helpful", True, False),
        ("rating <= 2", "rating", 2, True),
        ("rating <= 2", "rating", 4.5, False),
        ("rating <= 2", "other", 1, False),
        ("sentiment == 'bad'", "sentiment", "bad", True),
        ("helpful == false", "helpful", False, True),
    ],
)
def test_feedback_rules(rule: str, name: str, value: object, negative: bool) -> None:
    assert FeedbackRule.parse(rule).negative(name, value) is negative


def test_sampling_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"default_ratio": 0.25, "rules": [{"tag": "beta", "ratio": 1}], "window_s": 120}
    path = tmp_path / "sampling.json"
    path.write_text(json.dumps(config))
    for raw in (json.dumps(config), str(path)):
        monkeypatch.setenv("APPSDK_SAMPLING", raw)
        pipeline = appsdk.configure(local_store="never")
        assert pipeline.retention is not None
        assert pipeline.retention.config.default_ratio == 0.25
    for bad in ('{"default_ratio": 2}', "{not json", str(tmp_path / "missing.json")):
        monkeypatch.setenv("APPSDK_SAMPLING", bad)
        with pytest.raises(appsdk.ConfigError, match="APPSDK_SAMPLING"):
            appsdk.configure(local_store="never")


def test_marking_samples_everything_and_tells_the_collector_what_the_rules_decided() -> None:
    import yaml

    sampling = Sampling(default_ratio=0.1, rules=[SamplingRule(user_id="vip", ratio=1.0)])
    marked = sampling.model_copy(update={"head": "mark"})
    with sim.running() as simulator, capture_spans(sampling=marked) as captured:
        with appsdk.LLMDClient(base_url=simulator.base_url) as client:

            @appsdk.observe()
            def handle(i: int) -> None:
                if i % 10 == 0:
                    client.complete(model="sim-llama-3-8b", prompt="q", max_tokens=2)

            for i in range(200):
                with appsdk.trace_attributes(user_id="vip" if i % 4 == 0 else "someone"):
                    handle(i)
        roots = [s for s in captured.spans if s.parent is None]
        flags = {r.headers["traceparent"][-2:] for r in simulator.received}
    assert (len(roots) == 200 and flags == {"01"}) or flags == {"03"}  # all sampled downstream
    for root in roots:
        decision = root.attributes[DECISION_ATTRIBUTE]
        vip = root.attributes["user.id"] == "vip"
        assert decision == ("keep" if vip or keeps(0.1, root.context.trace_id) else "drop")
    # The Collector example keeps exactly what appsdk marks, plus errors and slow traces.
    config = yaml.safe_load((ROOT / "examples" / "otel-collector-tail-sampling.yaml").read_text())
    policies = config["processors"]["tail_sampling"]["policies"]
    by_key = {
        p["string_attribute"]["key"]: p["string_attribute"]["values"]
        for p in policies
        if p["type"] == "string_attribute"
    }
    assert by_key[DECISION_ATTRIBUTE] == ["keep"]
    assert set(by_key[KEPT_ATTRIBUTE]) == {"error", "slow", "feedback"}
    assert {"status_code", "latency"} <= {p["type"] for p in policies}
    assert "tail_sampling" in config["service"]["pipelines"]["traces"]["processors"]
