"""``appsdk sim`` as a user runs it: its models, the docs' model names, and its spans."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
from typer.testing import CliRunner

import appsdk
from appsdk.cli import app as cli_app
from appsdk.sim import MODELS, running
from appsdk.store import TraceStore
from tests.servers import clean_env, uvicorn_url


def test_sim_help_lists_every_model() -> None:
    result = CliRunner().invoke(cli_app, ["sim", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for model in (*MODELS, "llama-3-8b", "llama-3-70b"):
        assert model in result.output


def test_the_model_names_of_the_docs_are_served() -> None:
    with running() as simulator, appsdk.LLMDClient(base_url=simulator.base_url) as client:
        reply = client.chat(model="llama-3-8b", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


def test_the_standalone_sim_records_gateway_and_vllm_spans_in_the_local_store(
    tmp_path: Path,
) -> None:
    env = clean_env(APPSDK_METRICS="false")
    server = subprocess.Popen(
        [sys.executable, "-m", "appsdk.cli", "sim", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = uvicorn_url(server.stdout)  # uvicorn says where it listens
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        answer = httpx.post(
            f"{url}/v1/chat/completions",
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
