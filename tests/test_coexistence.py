"""An application that set up tracing itself: appsdk joins it and exports nothing twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from tests.langfuse_stub import PUBLIC_KEY, SECRET_KEY, langfuse_stub
from tests.servers import clean_env, otlp_receiver

LANGFUSE_FIRST = """
import sys
from langfuse import Langfuse, observe
import appsdk
url = sys.argv[1]
Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test-secret", base_url=url)
appsdk.configure(langfuse_public_key="pk-lf-test", langfuse_secret_key="sk-lf-test-secret",
                 langfuse_base_url=url)

@observe()
def theirs() -> str:
    return ours()

@appsdk.observe()
def ours() -> str:
    return "x"

theirs()
appsdk.shutdown()
from langfuse import get_client
get_client().flush()
"""

PROVIDER_FIRST = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
import appsdk
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1])))
trace.set_tracer_provider(provider)
appsdk.configure(otlp_traces_endpoint=sys.argv[2])

@appsdk.observe()
def ours() -> str:
    with trace.get_tracer("app").start_as_current_span("theirs"):
        return "x"

ours()
appsdk.shutdown()
"""


SCORES_THROUGH_GET_CLIENT = """
import sys
url, order, public_key, secret_key = sys.argv[1:5]
if order == "langfuse imported first":
    import langfuse
import appsdk
appsdk.configure(langfuse_public_key=public_key, langfuse_secret_key=secret_key,
                 langfuse_base_url=url)
from langfuse import get_client

@appsdk.observe()
def handler() -> None:
    get_client().score_current_span(name="span-score", value=1)
    get_client().score_current_trace(name="trace-score", value=2)
    print(appsdk.get_current_trace_id(), appsdk.get_current_observation_id())

handler()
appsdk.shutdown()
"""


def test_a_langfuse_client_created_first_exports_nothing_twice() -> None:
    with langfuse_stub() as stub:
        subprocess.run(
            [sys.executable, "-c", LANGFUSE_FIRST, stub.url],
            check=True,
            env=clean_env(),
            timeout=60,
        )
        stub.wait_for(lambda s: len(set(s.span_ids)) >= 2)
        counts = Counter(stub.span_ids)
    assert len(counts) == 2 and set(counts.values()) == {1}, counts


def test_appsdk_rides_along_on_the_applications_own_provider() -> None:
    with otlp_receiver() as app_backend, otlp_receiver() as ours:
        subprocess.run(
            [sys.executable, "-c", PROVIDER_FIRST, app_backend.traces_url, ours.traces_url],
            check=True,
            env=clean_env(),
            timeout=60,
        )
        theirs_seen = {s.name for s in app_backend.wait_for_spans(2)}
        ours_seen = {s.name for s in ours.wait_for_spans(2)}
    assert theirs_seen == ours_seen == {"ours", "theirs"}


@pytest.mark.parametrize("order", ["langfuse imported first", "langfuse imported after configure"])
def test_scores_through_get_client_reach_langfuse_with_the_configured_keys(order: str) -> None:
    # The keys are arguments of configure(), not in the environment: get_client() must find
    # appsdk's client, whenever langfuse was imported, not make a keyless no-op one.
    with langfuse_stub() as stub:
        arguments = [stub.url, order, PUBLIC_KEY, SECRET_KEY]
        ran = subprocess.run(
            [sys.executable, "-c", SCORES_THROUGH_GET_CLIENT, *arguments],
            check=True,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        trace_id, observation_id = ran.stdout.split()
        stub.wait_for(lambda s: len(s.scores) >= 2)
        scores = {score["name"]: score for score in stub.scores.values()}
    assert scores["span-score"]["traceId"] == trace_id
    assert scores["span-score"]["observationId"] == observation_id
    assert scores["span-score"]["value"] == 1
    assert scores["trace-score"]["traceId"] == trace_id
    assert scores["trace-score"].get("observationId") is None
    assert scores["trace-score"]["value"] == 2
