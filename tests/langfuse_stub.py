"""A Langfuse API stub on loopback: prompts, scores, projects, OTLP traces; Basic auth.

The real langfuse client talks to it. ``status`` forces every answer (503 for an outage),
``score_status`` only the scores API's, and ``stop()`` makes the port refuse connections
(``start(stub)`` serves it again).

For the scores API's faults: ``answer_scores(status, headers)`` queues one-off answers (a
404, a redirect, a 429 with ``Retry-After``), taken one per POST before anything else;
``score_max_items`` answers 413 to larger batches; ``score_invalid`` ids make the whole batch
a 400; ``score_rejects`` ids are refused in a 207; ``hang_scores`` holds every POST until the
event is set (then answers 503). ``score_batches`` records the ids of every POST, and
``score_receipts`` how often each id was accepted (more than once is a duplicate).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.servers import bound_socket, decode, http_server, serve_in_thread, url_of

PUBLIC_KEY = "pk-lf-test"
SECRET_KEY = "sk-lf-test-secret"


@dataclass
class LangfuseStub:
    url: str = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    prompts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: int | None = None
    score_status: int | None = None
    score_rejects: set[str] = field(default_factory=set)
    score_invalid: set[str] = field(default_factory=set)
    score_max_items: int | None = None
    score_script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang_scores: threading.Event | None = None
    score_receipts: dict[str, int] = field(default_factory=dict)
    score_batches: list[list[str]] = field(default_factory=list)
    span_ids: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    score_posts: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None
    stop_serving: Callable[[], None] | None = None
    # While stopped: the port, bound and not listening (refusing, and kept for a restart).
    reserved: socket.socket | None = None

    def add_prompt(
        self,
        name: str,
        version: int,
        prompt: Any,
        *,
        labels: list[str],
        type: str = "text",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.prompts.setdefault(name, []).append(
            {
                "type": type,
                "name": name,
                "version": version,
                "prompt": prompt,
                "config": config or {},
                "labels": labels,
                "tags": [],
            }
        )

    def answer_scores(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next scores POST (after those queued before) with ``status``."""
        with self.changed:
            self.score_script.append((status, headers or {}))

    def duplicates(self) -> dict[str, int]:
        """Score ids accepted more than once."""
        with self.changed:
            return {i: n for i, n in self.score_receipts.items() if n > 1}

    def count(self, path_prefix: str) -> int:
        with self.changed:
            return sum(1 for _, path in self.requests if path.startswith(path_prefix))

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("the Langfuse stub never saw what was expected")

    def stop(self) -> None:
        """From now on the port refuses connections; ``start(stub)`` serves on it again."""
        if self.server is not None and self.stop_serving is not None:
            self.stop_serving()
            self.server = self.stop_serving = None
            self.reserved = bound_socket(self.port)

    def close(self) -> None:
        self.stop()
        if self.reserved is not None:
            self.reserved.close()
            self.reserved = None

    def options(self) -> dict[str, Any]:
        """appsdk.configure() arguments that point at this stub."""
        return {
            "langfuse_public_key": PUBLIC_KEY,
            "langfuse_secret_key": SECRET_KEY,
            "langfuse_base_url": self.url,
        }


def _prompt_for(stub: LangfuseStub, name: str, query: dict[str, list[str]]) -> Any:
    versions = stub.prompts.get(name, [])
    if "version" in query:
        wanted = int(query["version"][0])
        return next((p for p in versions if p["version"] == wanted), None)
    label = query.get("label", ["production"])[0]
    newest = max(versions, key=lambda p: p["version"], default=None)
    for prompt in sorted(versions, key=lambda p: -p["version"]):
        labels = prompt["labels"] + (["latest"] if prompt is newest else [])
        if label in labels:
            return {**prompt, "labels": labels}
    return None


def _handler(stub: LangfuseStub) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; with Nagle on, each keep-alive answer would
        # wait ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _begin(self) -> tuple[str, dict[str, list[str]], bytes] | None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            with stub.changed:
                stub.requests.append((self.command, parts.path))
                stub.changed.notify_all()
            if stub.status is not None:
                self._reply(stub.status, {"message": "stub outage"})
                return None
            if self.headers.get("authorization") != expected:
                self._reply(401, {"message": "Invalid credentials"})
                return None
            return parts.path, parse_qs(parts.query), body

        def do_GET(self) -> None:
            begun = self._begin()
            if begun is None:
                return
            path, query, _ = begun
            if path.startswith("/api/public/v2/prompts/"):
                prompt = _prompt_for(stub, unquote(path.rsplit("/", 1)[1]), query)
                if prompt is None:
                    self._reply(
                        404, {"message": "Prompt not found", "error": "LangfuseNotFoundError"}
                    )
                else:
                    self._reply(200, prompt)
            elif path == "/api/public/projects":
                self._reply(200, {"data": [{"id": "stub-project", "name": "stub"}]})
            else:
                self._reply(404, {"message": "not found"})

        def do_POST(self) -> None:
            begun = self._begin()
            if begun is None:
                return
            path, _, body = begun
            if path == "/api/public/otel/v1/traces":
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                with stub.changed:
                    stub.span_ids.extend(span.span_id for span in decode(body))
                    stub.changed.notify_all()
                self._reply(200, {})
            elif path == "/api/public/scores":
                self._scores(json.loads(body))
            else:
                self._reply(404, {"message": "not found"})

        def _scores(self, payload: Any) -> None:
            items = payload if isinstance(payload, list) else [payload]
            with stub.changed:
                stub.score_posts += 1
                stub.score_batches.append([str(item.get("id")) for item in items])
                scripted = stub.score_script.pop(0) if stub.score_script else None
                stub.changed.notify_all()
            hang = stub.hang_scores
            if hang is not None:
                hang.wait(30)
                with contextlib.suppress(OSError):  # the client may be gone (killed, gave up)
                    self._reply(503, {"message": "stub outage ended"})
                return
            if scripted is not None:
                self._reply(scripted[0], {"message": "stub scripted answer"}, scripted[1])
                return
            if stub.score_status is not None:
                self._reply(stub.score_status, {"message": "stub score outage"})
                return
            if stub.score_max_items is not None and len(items) > stub.score_max_items:
                self._reply(413, {"message": "Request Entity Too Large"})
                return
            if any(item.get("id") in stub.score_invalid for item in items):
                self._reply(400, {"message": "Invalid request data"})
                return
            errors = []
            with stub.changed:
                for item in items:
                    if item.get("id") in stub.score_rejects:
                        errors.append({"message": "traceId does not exist"})
                        continue
                    stub.scores[item["id"]] = item
                    stub.score_receipts[item["id"]] = stub.score_receipts.get(item["id"], 0) + 1
                stub.changed.notify_all()
            if errors:  # Langfuse's 207: counts and messages, no ids
                accepted = len(items) - len(errors)
                self._reply(207, {"accepted": accepted, "rejected": len(errors), "errors": errors})
            else:
                self._reply(202, {"message": "Accepted"})

    return Handler


def start(stub: LangfuseStub) -> None:
    """Serve ``stub``: on a new port, or after ``stop()`` again at the same URL."""
    reserved, stub.reserved = stub.reserved, None
    server = http_server(_handler(stub), reserved)
    stub.server = server
    stub.url = url_of(server)
    stub.stop_serving = serve_in_thread(server)


@contextmanager
def langfuse_stub() -> Iterator[LangfuseStub]:
    stub = LangfuseStub()
    start(stub)
    try:
        yield stub
    finally:
        if stub.hang_scores is not None:
            stub.hang_scores.set()
        stub.close()
