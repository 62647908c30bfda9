"""GenAI client metrics: to the application's MeterProvider, or to the OTLP endpoint."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import clean_env, otlp_receiver

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
