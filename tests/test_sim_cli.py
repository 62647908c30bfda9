"""``appsdk sim`` as a user runs it: its models, the docs' model names, and its spans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

import appsdk
from appsdk.cli import app as cli_app
from appsdk.sim import MODELS, running
from appsdk.store import TraceStore


def test_sim_help_lists_every_model() -> None:
    result = CliRunner().invoke(cli_app, ["sim", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for model in (*MODELS, "llama-3-8b", "llama-3-70b"):
        assert model in result.output


def test_the_model_names_of_the_docs_are_served() -> None:
    with running() as simulator, appsdk.LLMDClient(base_url=simulator.base_url) as client:
        reply = client.chat(model="llama-3-8b", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_standalone_sim_records_gateway_and_vllm_spans_in_the_local_store(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env["APPSDK_METRICS"] = "false"
    server = subprocess.Popen(
        [sys.executable, "-m", "appsdk.cli", "sim", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:  # uvicorn says when it listens
            if "Uvicorn running" in line:
                break
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}]},
            headers={"traceparent": traceparent},
            timeout=30,
        )
        assert answer.status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    store = TraceStore(tmp_path / ".appsdk" / "traces.db")
    names = {span.name for span in store.spans("4bf92f3577b34da6a3ce929d0e0e4736")}
    assert {"gateway.request", "llm_request"} <= names
