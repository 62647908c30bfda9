"""Every Python example runs, as a user would run it, against the simulator and stubs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appsdk import sim
from appsdk.store import TraceStore
from tests.langfuse_stub import LangfuseStub, langfuse_stub
from tests.servers import clean_env, uvicorn_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, cwd: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_demo_prints_the_whole_tree(tmp_path: Path) -> None:
    out = _run("rag_pipeline.py", tmp_path)
    for expected in (
        "rag-demo [chain]",
        "retrieve [retriever]",
        "prompt rag-answer v2",
        "ttft",
        "cost",
        "gateway.request",
        "llm_request",
        "score helpful = True",
    ):
        assert expected in out, expected
    lines = out.splitlines()
    depth = {
        name: next(line.index(name) for line in lines if name in line)
        for name in ("chat sim-llama-3-8b", "gateway.request", "llm_request")
    }
    assert depth["chat sim-llama-3-8b"] < depth["gateway.request"] < depth["llm_request"]
    assert "ana@example.com" not in out
    store = TraceStore(tmp_path / ".appsdk" / "traces.db")
    spans = [s for t in store.list_traces() for s in store.spans(t.trace_id)]
    # answer(client, question, context): the shared client is a placeholder, not its pool.
    (answer,) = [s for s in spans if s.name == "answer"]
    recorded = json.loads(answer.attributes["langfuse.observation.input"])
    assert recorded["args"][0] == "<LLMDClient>"


def test_async_agent(tmp_path: Path) -> None:
    out = _run("async_agent.py", tmp_path)
    assert out.count("Simulated answer") == 3
    store = TraceStore(tmp_path / ".appsdk" / "traces.db")
    spans = [s for t in store.list_traces() for s in store.spans(t.trace_id)]
    names = [s.name for s in spans]
    assert names.count("plan_trip") == 3 and names.count("lookup_weather") == 3
    for span in spans:
        if span.name == "plan_trip":
            recorded = json.loads(span.attributes["langfuse.observation.input"])
            assert recorded["args"][0] == "<AsyncLLMDClient>"


def test_fastapi_app(tmp_path: Path) -> None:
    out = _run("fastapi_app.py", tmp_path)
    assert "rating by the user: HTTP 202; by someone else: HTTP 403" in out


@pytest.fixture
def stub() -> LangfuseStub:
    with langfuse_stub() as s:
        yield s  # type: ignore[misc]


def _assert_both_decorators_nest(store_path: Path) -> None:
    store = TraceStore(store_path)
    (trace,) = store.list_traces()
    spans = {s.name: s for s in store.spans(trace.trace_id)}
    store.close()
    assert set(spans) == {"mixed", "legacy_pipeline", "search", "legacy_generate"}
    assert spans["legacy_pipeline"].parent_span_id == spans["mixed"].span_id
    assert spans["search"].parent_span_id == spans["legacy_pipeline"].span_id
    assert spans["legacy_generate"].parent_span_id == spans["legacy_pipeline"].span_id
    assert spans["legacy_generate"].scope == "langfuse-sdk"
    assert spans["mixed"].scope == "appsdk"


def test_mixed_with_langfuse(tmp_path: Path, stub: LangfuseStub) -> None:
    _run(
        "mixed_with_langfuse.py",
        tmp_path,
        LANGFUSE_PUBLIC_KEY="pk-lf-test",
        LANGFUSE_SECRET_KEY="sk-lf-test-secret",
        LANGFUSE_BASE_URL=stub.url,
        APPSDK_LOCAL_STORE="always",
    )
    _assert_both_decorators_nest(tmp_path / ".appsdk" / "traces.db")
    assert stub.count("/api/public/otel/v1/traces") >= 1


def test_mixed_with_langfuse_without_keys_stores_both_decorators_spans_locally(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "mixed_with_langfuse.py")],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "answer to llm-d from 1 docs" in result.stdout
    assert "error" not in output.lower(), output  # no "Authentication error" from langfuse
    _assert_both_decorators_nest(tmp_path / ".appsdk" / "traces.db")


def test_the_fastapi_app_served_by_uvicorn_as_its_docstring_says(tmp_path: Path) -> None:
    import signal

    import httpx

    store = tmp_path / "traces.db"
    with sim.running() as simulator:
        env = clean_env(
            LLMD_BASE_URL=simulator.base_url,
            APPSDK_FEEDBACK_SECRET="s" * 32,
            APPSDK_STORE_PATH=str(store),
            APPSDK_METRICS="false",
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--port", "0"],
            cwd=EXAMPLES.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = uvicorn_url(server.stdout)
            answer = httpx.post(
                f"{url}/chat", json={"question": "hi"}, headers={"x-user": "ana"}, timeout=30
            ).json()
            rated = httpx.post(
                f"{url}/api/feedback",
                json={"token": answer["feedback_token"], "name": "helpful", "value": True},
                headers={"x-user": "ana"},
                timeout=30,
            )
            assert rated.status_code == 202
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=30)
    traces = TraceStore(store)
    (chat,) = [
        t.trace_id
        for t in traces.list_traces()
        if any(span.name == "chat-endpoint" for span in traces.spans(t.trace_id))
    ]
    assert chat != "0" * 32
    assert [score.name for score in traces.scores(chat)] == ["helpful"]
