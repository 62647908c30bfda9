"""GenAI client metrics: to the application's MeterProvider, or to the OTLP endpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from appsdk.metrics_export import REFUSED_STATUSES, _exporter
from tests.servers import OTLPReceiver, Request, clean_env, otlp_receiver

OWN_PROVIDER = """
import json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import appsdk
from appsdk import sim
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
appsdk.configure(local_store="never")
with sim.running() as s, appsdk.LLMDClient(base_url=s.base_url) as client:
    client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "a b c"}])
    try:
        client.chat(model="missing-model", messages=[{"role": "user", "content": "x"}])
    except appsdk.LLMDError:
        pass
found = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            found[metric.name] = [dict(p.attributes) | {"sum": p.sum}
                                  for p in metric.data.data_points]
print(json.dumps(found))
"""

OTLP = """
import sys
import appsdk
from appsdk import sim
appsdk.configure(otlp_endpoint=sys.argv[1])
with sim.running() as s, appsdk.LLMDClient(base_url=s.base_url) as client:
    client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "hi"}])
appsdk.shutdown()
"""


def test_client_metrics_go_to_the_applications_meter_provider() -> None:
    out = subprocess.run(
        [sys.executable, "-c", OWN_PROVIDER],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
        timeout=60,
    )
    found = json.loads(out.stdout)
    tokens = {p["gen_ai.token.type"]: p["sum"] for p in found["gen_ai.client.token.usage"]}
    assert tokens == {"input": 3, "output": 12}
    durations = found["gen_ai.client.operation.duration"]
    assert {p.get("error.type") for p in durations} == {None, "ModelNotFoundError"}
    assert all(p["gen_ai.request.model"] for p in durations)


def test_client_metrics_follow_the_traces_to_the_otlp_endpoint() -> None:
    with otlp_receiver() as receiver:
        subprocess.run(
            [sys.executable, "-c", OTLP, receiver.url], env=clean_env(), check=True, timeout=60
        )
        receiver.wait_for(lambda r: any(q.path == "/v1/metrics" for q in r.requests))
        metric_bodies = [q.body for q in receiver.requests if q.path == "/v1/metrics"]
    assert any(b"gen_ai.client.operation.duration" in body for body in metric_bodies)


# Four export attempts, as four export intervals would make them, without waiting for them.
FLUSHED = """
import sys
from opentelemetry import metrics
import appsdk
from appsdk import sim
appsdk.configure(otlp_endpoint=sys.argv[1])
with sim.running() as s, appsdk.LLMDClient(base_url=s.base_url) as client:
    for _ in range(4):
        client.chat(model="sim-llama-3-8b", messages=[{"role": "user", "content": "hi"}])
        metrics.get_meter_provider().force_flush()
appsdk.shutdown()
"""


def run_flushed(endpoint: str) -> str:
    """Runs FLUSHED against ``endpoint``; returns its stderr."""
    out = subprocess.run(
        [sys.executable, "-c", FLUSHED, endpoint],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
        timeout=60,
    )
    return out.stderr


def metric_requests(receiver: OTLPReceiver) -> list[Request]:
    return [q for q in receiver.requests if q.path.endswith("/v1/metrics")]


@pytest.mark.parametrize("status", sorted(REFUSED_STATUSES))
def test_a_backend_that_refuses_metrics_gets_them_switched_off_with_one_warning(
    status: int,
) -> None:
    with otlp_receiver(metrics_statuses=(status,)) as receiver:
        endpoint = receiver.url.replace("http://", "http://tenant:s3cr3t-pw@")
        stderr = run_flushed(endpoint)
        receiver.wait_for_spans(4)  # the traces still flow
    warnings = [line for line in stderr.splitlines() if "APPSDK_METRICS=false" in line]
    assert len(warnings) == 1, stderr
    assert f"HTTP {status}" in warnings[0]
    assert f"http://***@127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/v1/metrics" in warnings[0]
    assert "s3cr3t" not in stderr
    assert "Failed to export" not in stderr, stderr
    assert len(metric_requests(receiver)) == 1  # nothing more after the refusal


def test_a_transient_metrics_failure_does_not_switch_them_off() -> None:
    with otlp_receiver(metrics_statuses=(503, 200)) as receiver:
        stderr = run_flushed(receiver.url)
    assert "APPSDK_METRICS" not in stderr, stderr
    # The 503, the SDK's retry, the three flushes after it and the last export at exit.
    bodies = [q.body for q in metric_requests(receiver)]
    assert len(bodies) == 6, stderr
    assert all(b"gen_ai.client.operation.duration" in body for body in bodies)


@pytest.mark.parametrize(
    ("status", "refused"), [(404, True), (415, True), (400, False), (401, False), (500, False)]
)
def test_only_an_answer_that_the_endpoint_takes_no_metrics_is_a_refusal(
    status: int, refused: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """In process, on the SDK's exporter: fails if it stops using the ``session`` it is given
    (appsdk would no longer see the status) or logs its error off the exporting thread."""
    reader = InMemoryMetricReader()
    MeterProvider(metric_readers=[reader]).get_meter("t").create_counter("c").add(1)
    data = reader.get_metrics_data()
    assert data is not None
    with otlp_receiver(status=status) as receiver:
        exporter = _exporter(receiver.url + "/v1/metrics", {}, 5.0)
        try:
            for _ in range(3):
                exporter.export(data)
        finally:
            exporter.shutdown()
    sent = len(metric_requests(receiver))
    refusals = [r for r in caplog.records if "APPSDK_METRICS=false" in r.getMessage()]
    failures = [r for r in caplog.records if "Failed to export" in r.getMessage()]
    if refused:
        assert (sent, len(refusals), failures) == (1, 1, [])
        assert refusals[0].name == "appsdk"
    else:
        assert (sent, refusals, len(failures)) == (3, [], 3)
