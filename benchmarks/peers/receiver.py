"""The one OTLP/HTTP receiver every SDK of the peer benchmark exports to, in its own process.

Run as ``python receiver.py``: it binds 127.0.0.1 on a free port, prints ``PORT <n>`` and
serves until terminated. Any POST (``/v1/traces``, ``/api/public/otel/v1/traces``, metrics, ...)
is answered 200 at once with an empty protobuf body; the body is then gunzipped and its spans
counted off the exporter's clock. ``GET /stats`` waits until every received body is counted and
answers the running totals as JSON: spans, requests, bytes on the wire and decoded, per path.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_lock = threading.Condition()
_pending = 0
_totals: Counter[str] = Counter()


def _span_count(path: str, content_type: str, body: bytes) -> int:
    if not path.endswith("/traces"):
        return 0
    if "json" in content_type:
        message: Any = json.loads(body)
        return sum(
            len(scope.get("spans", []))
            for resource in message.get("resourceSpans", [])
            for scope in resource.get("scopeSpans", [])
        )
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        global _pending
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _lock:
            _pending += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.flush()
        path = self.path.split("?")[0]
        try:
            encoding = self.headers.get("Content-Encoding", "")
            body = raw
            if encoding == "gzip":
                body = gzip.decompress(raw)
            elif encoding == "deflate":
                body = zlib.decompress(raw)
            spans = _span_count(path, self.headers.get("Content-Type", ""), body)
            error = 0
        except Exception:  # a body it cannot read is counted, not fatal
            spans, body, error = 0, b"", 1
        with _lock:
            _totals.update(
                {
                    "requests": 1,
                    "spans": spans,
                    "bytes_wire": len(raw),
                    "bytes_decoded": len(body),
                    "undecodable": error,
                    f"requests {path}": 1,
                }
            )
            _pending -= 1
            _lock.notify_all()

    def do_GET(self) -> None:
        with _lock:
            _lock.wait_for(lambda: _pending == 0, timeout=60)
            payload = json.dumps(dict(_totals)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.5)  # until the benchmark terminates this process


if __name__ == "__main__":
    main()
