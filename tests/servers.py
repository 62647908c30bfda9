"""Loopback servers the tests talk to: an OTLP/HTTP receiver that decodes protobuf.

And what every server and subprocess of the tests shares: ``http_server`` binds port 0 (or a
port reserved before), ``serve_in_thread`` serves with a stop that costs no poll interval,
``reserved_port`` is a port that refuses connections until a server takes it over, and
``clean_env`` is the environment of a child process without the developer's configuration.
ASGI apps and the simulator are served by ``appsdk.sim.serving`` and ``appsdk.sim.running``.
"""

from __future__ import annotations

import gzip
import os
import re
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

CONFIGURATION_PREFIXES = ("APPSDK_", "LANGFUSE_", "OTEL_")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any APPSDK_, LANGFUSE_ or OTEL_ variable, plus ``extra``.

    Inside a test that is conftest's clean environment without its ``APPSDK_METRICS=false``:
    a child gets the default (metrics on) unless ``extra`` says otherwise.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIGURATION_PREFIXES)}
    env.update(extra)
    return env


def bound_socket(port: int = 0) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: a free one) and not listening: connections to it
    are refused, and no other socket can take the port while it is open."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port just served again
    sock.bind(("127.0.0.1", port))
    return sock


@contextmanager
def reserved_port() -> Iterator[socket.socket]:
    """``bound_socket()`` for the block. ``http_server(..., reserved=sock)`` serves on it."""
    with bound_socket() as sock:
        yield sock


def http_server(
    handler: type[BaseHTTPRequestHandler], reserved: socket.socket | None = None
) -> ThreadingHTTPServer:
    """A threading HTTP server on 127.0.0.1: on a port of its own choosing (port 0), or listening
    on ``reserved`` (a socket from ``reserved_port``, which it then owns)."""
    if reserved is None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    else:
        server = ThreadingHTTPServer(reserved.getsockname(), handler, bind_and_activate=False)
        server.socket.close()
        server.socket = reserved
        server.server_address = reserved.getsockname()
        server.server_activate()
    server.daemon_threads = True
    return server


def url_of(bound: socketserver.TCPServer | socket.socket) -> str:
    """The base URL of a server, or of a port held by a socket from ``bound_socket``."""
    port = bound.getsockname()[1] if isinstance(bound, socket.socket) else bound.server_address[1]
    return f"http://127.0.0.1:{port}"


def serve_in_thread(server: socketserver.BaseServer) -> Callable[[], None]:
    """Serve ``server`` on a daemon thread; returns ``stop``, which ends it and closes it.

    ``serve_forever(poll_interval)`` sees a ``shutdown()`` only at its next poll: this loop
    waits on the listening socket and a wake-up socket together, so a stop is immediate.
    ``stop`` may be called more than once.
    """
    wake_read, wake_write = socket.socketpair()

    def loop() -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(wake_read, selectors.EVENT_READ)
            while True:
                ready = selector.select()
                if any(key.fileobj is wake_read for key, _ in ready):
                    return
                server.handle_request()  # the listening socket is readable: no wait

    thread = threading.Thread(target=loop, name="test-server", daemon=True)
    thread.start()
    stopped = threading.Lock()
    owner = os.getpid()

    def stop() -> None:
        if not stopped.acquire(blocking=False):
            return
        if os.getpid() == owner:  # a forked child leaving the block must not stop the parent's
            wake_write.send(b"x")
            thread.join()
        server.server_close()
        wake_read.close()
        wake_write.close()

    return stop


_UVICORN_URL = re.compile(r"Uvicorn running on (http://\S+)")


def uvicorn_url(lines: Iterable[str]) -> str:
    """The URL a uvicorn process listens on (started with ``--port 0``), read off its log."""
    seen = []
    for line in lines:
        found = _UVICORN_URL.search(line)
        if found:
            return found.group(1)
        seen.append(line)
    raise AssertionError("uvicorn ended without listening:\n" + "".join(seen))


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
    # The answers to /v1/metrics, in order, the last one repeated (empty: ``status``).
    metrics_statuses: tuple[int, ...] = ()
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
def otlp_receiver(
    *, reserved: socket.socket | None = None, **options: Any
) -> Iterator[OTLPReceiver]:
    """Serve a receiver on a port of its own, or on ``reserved`` (see ``reserved_port``)."""
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
            # Langfuse's JSON APIs share its base URL: recorded, never decoded. Scores are taken
            # (or refused) like the traces; the rest (media uploads) is not served here: a 404,
            # which their clients give up on at once instead of retrying with backoff.
            path = self.path.split("?", 1)[0]
            is_traces = path.endswith("/v1/traces")
            is_otlp = is_traces or path.endswith("/v1/metrics")
            status, extra = receiver.status, {}
            if not is_otlp and not path.endswith("/api/public/scores"):
                status = 404
            if receiver.responder is not None and body and is_traces:
                status, extra = receiver.responder(decode(body))
            if receiver.metrics_statuses and path.endswith("/v1/metrics"):
                with receiver.changed:
                    seen = len([q for q in receiver.requests if q.path.endswith("/v1/metrics")])
                status = receiver.metrics_statuses[min(seen, len(receiver.metrics_statuses) - 1)]
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
            answer = b"" if is_otlp else b"{}"
            self.send_header(
                "content-type", "application/x-protobuf" if is_otlp else "application/json"
            )
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = http_server(Handler, reserved)
    receiver.url = url_of(server)
    stop = serve_in_thread(server)
    try:
        yield receiver
    finally:
        receiver.release.set()
        stop()
