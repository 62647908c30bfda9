"""Loopback servers the tests talk to: an OTLP/HTTP receiver that decodes protobuf."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    scope: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    status_message: str


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: bytes
    spans: list[ReceivedSpan]


def decode(body: bytes) -> list[ReceivedSpan]:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    spans = []
    for rs in message.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex() or None,
                        name=s.name,
                        kind=s.kind,
                        scope=ss.scope.name,
                        attributes={kv.key: any_value(kv.value) for kv in s.attributes},
                        resource=resource,
                        status_code=s.status.code,
                        status_message=s.status.message,
                    )
                )
    return spans


@dataclass
class OTLPReceiver:
    """Records every export request; ``status`` and ``hang`` choose how it answers."""

    url: str = ""
    status: int = 200
    hang: bool = False
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    # Chooses each answer from the decoded spans of the request: (status, extra headers).
    responder: Callable[[list[ReceivedSpan]], tuple[int, dict[str, str]]] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def traces_url(self) -> str:
        return self.url + "/v1/traces"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self.changed:
            return [span for request in self.requests for span in request.spans]

    def wait_for(self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                got = f"{len(self.requests)} requests, {len(self.spans)} spans"
                raise AssertionError(f"receiver never saw what was expected; got {got}")

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        self.wait_for(lambda r: len([s for q in r.requests for s in q.spans]) >= count, timeout)
        return self.spans


@contextmanager
def otlp_receiver(*, port: int = 0, **options: Any) -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver(**options)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            if receiver.hang:
                receiver.release.wait(30)
                return
            if receiver.delay_s:
                receiver.release.wait(receiver.delay_s)
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            body = gzip.decompress(raw) if self.headers.get("content-encoding") == "gzip" else raw
            is_traces = not self.path.endswith("/v1/metrics")
            status, extra = receiver.status, {}
            if receiver.responder is not None and body and is_traces:
                status, extra = receiver.responder(decode(body))
            spans = decode(body) if status == 200 and body and is_traces else []
            with receiver.changed:
                receiver.requests.append(
                    Request(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body, spans
                    )
                )
                receiver.changed.notify_all()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll: shutting the server down at the end of a test waits at most this long.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
