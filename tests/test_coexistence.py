"""An application that set up tracing itself: appsdk joins it and exports nothing twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from tests.langfuse_stub import langfuse_stub
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
