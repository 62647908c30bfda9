"""Nothing reaches the wrong destination: what waits on disk for one project or tenant is only
ever sent by a process configured for that same project or tenant, with its credentials."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import appsdk
from appsdk.cli import app as cli
from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient
from appsdk.feedback.outbox import outbox_status
from appsdk.spool import Spool
from tests.servers import Request, http_server, otlp_receiver, serve_in_thread, url_of

TRACE = "ab" * 16
PROJECT_A = {"langfuse_public_key": "pk-lf-aaaa-0001", "langfuse_secret_key": "sk-lf-secret-of-a"}
PROJECT_B = {"langfuse_public_key": "pk-lf-bbbb-0002", "langfuse_secret_key": "sk-lf-secret-of-b"}


def _public_key(request_headers: dict[str, str]) -> str:
    basic = request_headers.get("authorization", "").removeprefix("Basic ")
    return base64.b64decode(basic).decode().partition(":")[0]


def _received(requests: list[Request], who: str) -> set[tuple[str, str]]:
    """(sender, span name) of every span that arrived; the sender read from a header."""
    return {
        (_public_key(r.headers) if who == "basic" else r.headers.get(who, ""), s.name)
        for r in requests
        for s in r.spans
    }


def _spool_while_down(options: dict[str, Any], names: list[str]) -> None:
    pipeline = appsdk.configure(**options)
    for name in names:
        with pipeline.tracer.start_as_current_span(name):
            pass
    assert not appsdk.flush(10)  # spooled, not delivered
    appsdk.shutdown()
    exporters = [counts for counts in appsdk.stats().values() if "spooled" in counts]
    assert exporters and {counts["spooled"] for counts in exporters} == {len(names)}


def _drain(options: dict[str, Any]) -> None:
    pipeline = appsdk.configure(**options)
    assert pipeline.drain_spool(20)
    appsdk.shutdown()


def _status(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["spool", "status", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_langfuse_spans_spooled_for_project_a_never_reach_project_b(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reserved: socket.socket
) -> None:
    url = url_of(reserved)  # one URL for both projects, as on Langfuse Cloud
    common = {"langfuse_base_url": url, "spool_path": tmp_path / "spool.db"}
    a, b = {**common, **PROJECT_A}, {**common, **PROJECT_B}
    _spool_while_down(a, [f"a-{i}" for i in range(5)])
    _spool_while_down(b, [f"b-{i}" for i in range(3)])
    with otlp_receiver(reserved=reserved) as langfuse:
        _drain(b)
        assert _received(langfuse.requests, "basic") == {
            ("pk-lf-bbbb-0002", f"b-{i}") for i in range(3)
        }

        out = _status(
            monkeypatch,
            {
                "LANGFUSE_PUBLIC_KEY": "pk-lf-bbbb-0002",
                "LANGFUSE_SECRET_KEY": "sk-lf-secret-of-b",
                "LANGFUSE_BASE_URL": url,
                "APPSDK_SPOOL_PATH": str(tmp_path / "spool.db"),
            },
        )
        assert f"langfuse {url} (project pk-lf-aaaa…)" in out
        assert "left by another configuration" in out and "5 spans" in out
        assert "pk-lf-bbbb" not in out  # B's own batches were all sent
        assert "sk-lf-secret" not in out

        langfuse.requests.clear()
        _drain(a)  # A's own configuration sends them, with A's keys
        assert _received(langfuse.requests, "basic") == {
            ("pk-lf-aaaa-0001", f"a-{i}") for i in range(5)
        }
    assert Spool(tmp_path / "spool.db").status() == []


def test_otlp_tenants_told_apart_by_a_header_never_get_each_others_spans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reserved: socket.socket
) -> None:
    url = url_of(reserved) + "/v1/traces"
    common = {"otlp_traces_endpoint": url, "spool_path": tmp_path / "spool.db"}
    _spool_while_down({**common, "otlp_headers": "x-scope-orgid=tenant-a"}, ["a-0", "a-1"])
    _spool_while_down({**common, "otlp_headers": "x-scope-orgid=tenant-b"}, ["b-0", "b-1", "b-2"])
    env_b = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-scope-orgid=tenant-b",
        "APPSDK_SPOOL_PATH": str(tmp_path / "spool.db"),
    }
    for key, value in env_b.items():
        monkeypatch.setenv(key, value)
    with otlp_receiver(reserved=reserved) as collector:
        flushed = CliRunner().invoke(cli, ["spool", "flush", "--timeout", "20"])
        assert flushed.exit_code == 0, flushed.output
        assert "otlp: sent 3 spooled spans, 0 still waiting" in flushed.output
        assert "spooled for other destinations were not sent" in flushed.output
        assert _received(collector.requests, "x-scope-orgid") == {
            ("tenant-b", "b-0"),
            ("tenant-b", "b-1"),
            ("tenant-b", "b-2"),
        }

    out = _status(monkeypatch, env_b)
    assert f"otlp {url} (headers x-scope-orgid)" in out
    assert "left by another configuration" in out and "2 spans" in out
    assert "tenant-a" not in out and "tenant-b" not in out  # header values are never shown


@dataclass
class ScoresServer:
    """Langfuse's scores API for any project: records who sent which score."""

    url: str = ""
    down: bool = False
    received: list[tuple[str, str]] = field(default_factory=list)  # (public key, score name)


@contextmanager
def scores_server() -> Iterator[ScoresServer]:
    state = ScoresServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if state.down:
                status = 503
            else:
                sender = _public_key({"authorization": self.headers.get("authorization", "")})
                state.received += [(sender, item["name"]) for item in json.loads(body)]
                status = 202
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

    server = http_server(Handler)
    state.url = url_of(server)
    stop = serve_in_thread(server)
    try:
        yield state
    finally:
        stop()


def _feedback(url: str, project: dict[str, str], outbox: Path) -> FeedbackClient:
    settings = load_settings(langfuse_base_url=url, **project)
    return FeedbackClient(
        settings=settings, outbox_path=outbox, backoff_s=(0.01, 0.05), start=False
    )


def test_feedback_pending_for_project_a_is_never_delivered_with_project_bs_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "feedback.db"
    with scores_server() as langfuse:
        langfuse.down = True
        client_a = _feedback(langfuse.url, PROJECT_A, outbox)
        for i in range(3):
            client_a.submit(trace_id=TRACE, name=f"a-{i}", value=i)
        assert not client_a.flush(0.2)  # the outage: it stays pending
        client_a.close()
        langfuse.down = False

        client_b = _feedback(langfuse.url, PROJECT_B, outbox)
        client_b.submit(trace_id=TRACE, name="b-0", value=1)
        assert client_b.flush(10)
        assert langfuse.received == [("pk-lf-bbbb-0002", "b-0")]
        assert client_b.stats() == {"pending": 0, "delivered": 1, "rejected": 0}
        client_b.close()

        out = _status(
            monkeypatch,
            {
                "LANGFUSE_PUBLIC_KEY": "pk-lf-bbbb-0002",
                "LANGFUSE_SECRET_KEY": "sk-lf-secret-of-b",
                "LANGFUSE_BASE_URL": langfuse.url,
            },
            "--outbox",
            str(outbox),
        )
        assert f"langfuse {langfuse.url} (project pk-lf-aaaa…)" in out
        assert "left by another configuration" in out and "3 pending" in out
        assert "sk-lf-secret" not in out

        client_a = _feedback(langfuse.url, PROJECT_A, outbox)
        assert client_a.flush(10)
        client_a.close()
        assert sorted(langfuse.received[1:]) == [("pk-lf-aaaa-0001", f"a-{i}") for i in range(3)]


_OLD_SPOOL = """
CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT, exporter TEXT NOT NULL,
    created REAL NOT NULL, spans INTEGER NOT NULL, size INTEGER NOT NULL, rejected TEXT,
    body BLOB NOT NULL);
CREATE INDEX spool_by_exporter ON spool (exporter, rejected, id);
CREATE INDEX spool_by_age ON spool (created);
"""
_OLD_OUTBOX = """
CREATE TABLE outbox (id TEXT PRIMARY KEY, payload TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX outbox_due ON outbox (state, next_attempt);
"""


def _old_file(path: Path, schema: str, insert: str, row: tuple[Any, ...]) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(schema)
    connection.execute(insert, row)
    connection.commit()
    connection.close()


def test_files_of_an_older_appsdk_open_and_their_rows_are_shown_never_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    spool, outbox = tmp_path / "spool.db", tmp_path / "feedback.db"
    with otlp_receiver() as collector, scores_server() as langfuse:
        # An old spool row for this very URL: it has no identity, so no configuration owns it.
        _old_file(
            spool,
            _OLD_SPOOL,
            "INSERT INTO spool (exporter, created, spans, size, rejected, body) "
            "VALUES (?, ?, ?, ?, NULL, ?)",
            ("otlp:0123456789ab", time.time(), 7, 20, gzip.compress(b"")),
        )
        score = {"id": "old-1", "name": "old", "value": 1, "timestamp": "2024-01-01T00:00:00Z"}
        _old_file(
            outbox,
            _OLD_OUTBOX,
            "INSERT INTO outbox VALUES (?, ?, 'pending', 0, 0, NULL, 0, 0)",
            ("old-1", json.dumps(score)),
        )
        _drain({"otlp_traces_endpoint": collector.traces_url, "spool_path": spool})
        client = _feedback(langfuse.url, PROJECT_A, outbox)
        assert client.flush(5) and client.stats()["pending"] == 0
        client.close()
        assert collector.requests == [] and langfuse.received == []

        out = _status(
            monkeypatch,
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.traces_url,
                "APPSDK_SPOOL_PATH": str(spool),
                "APPSDK_FEEDBACK_OUTBOX": str(outbox),
            },
        )
    assert "otlp:0123456789ab (spooled by an older appsdk" in out and "7 spans" in out
    assert "langfuse (submitted by an older appsdk" in out and "1 pending" in out
    assert out.count("left by another configuration") == 2
    [old] = outbox_status(outbox)
    assert (old.identity, old.pending) == ("", 1)


def test_the_spool_keys_of_the_pipeline_are_the_destinations_of_the_settings(
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {
        **PROJECT_A,
        "langfuse_base_url": "http://127.0.0.1:9",
        "otlp_endpoint": "http://127.0.0.1:9",
        "otlp_headers": "x-scope-orgid=t1",
        "otlp_endpoints": "http://127.0.0.1:9/a,http://127.0.0.1:9/b",
        "spool_path": tmp_path / "spool.db",
    }
    pipeline = appsdk.configure(**options)
    keys = [getattr(processor, "spool_key", None) for processor, _ in pipeline.processors]
    assert keys == load_settings(**options).destinations()
    assert [key.name for key in keys if key] == ["langfuse", "otlp", "otlp-1", "otlp-2"]


def test_the_spool_file_holds_no_credential(tmp_path: Path, reserved: socket.socket) -> None:
    url = url_of(reserved)
    _spool_while_down(
        {
            "langfuse_base_url": url,
            "otlp_traces_endpoint": f"{url}/v1/traces",
            "otlp_headers": "authorization=Bearer tok-3141592653,x-scope-orgid=tenant-zz",
            "spool_path": tmp_path / "spool.db",
            **PROJECT_A,
        },
        ["x"],
    )
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("spool.db*"))
    for secret in (b"sk-lf-secret-of-a", b"tok-3141592653", b"tenant-zz"):
        assert secret not in raw
