"""Prompt versions from Langfuse (the real client against a stub) and from a local folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import appsdk
from appsdk import sim
from appsdk.prompts import LocalPrompt, PromptError, get_prompt
from appsdk.testing import SpanCapture, capture_spans
from tests.langfuse_stub import LangfuseStub, langfuse_stub

MODEL = "sim-llama-3-8b"
NAME_KEY = "langfuse.observation.prompt.name"
VERSION_KEY = "langfuse.observation.prompt.version"


@pytest.fixture
def stub() -> Iterator[LangfuseStub]:
    with langfuse_stub() as s:
        s.add_prompt("qa", 1, "Old: {{question}}", labels=[])
        s.add_prompt(
            "qa",
            2,
            "Answer briefly: {{question}}",
            labels=["production"],
            config={"temperature": 0.1, "max_tokens": 5},
        )
        s.add_prompt("qa", 3, "Draft: {{question}}", labels=["staging"])
        s.add_prompt(
            "chat-qa",
            7,
            [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "{{question}}"},
            ],
            labels=["production"],
            type="chat",
        )
        yield s


@pytest.fixture
def captured(stub: LangfuseStub) -> Iterator[SpanCapture]:
    with capture_spans(**stub.options()) as capture:
        yield capture


def test_versions_and_labels_come_from_langfuse(stub: LangfuseStub, captured: SpanCapture) -> None:
    assert get_prompt("qa").version == 2  # the production label by default
    assert get_prompt("qa", label="staging").version == 3
    assert get_prompt("qa", version=1).compile(question="why?") == "Old: why?"
    assert get_prompt("qa", label="latest").version == 3
    chat = get_prompt("chat-qa", type="chat")
    assert chat.compile(question="hi")[1] == {"role": "user", "content": "hi"}


def test_prompts_are_cached_by_the_langfuse_client(
    stub: LangfuseStub, captured: SpanCapture
) -> None:
    get_prompt("qa", cache_ttl_seconds=60)
    get_prompt("qa", cache_ttl_seconds=60)
    assert stub.count("/api/public/v2/prompts/qa") == 1


def test_a_missing_prompt_without_fallback_is_a_clear_error(
    stub: LangfuseStub, captured: SpanCapture
) -> None:
    with pytest.raises(PromptError, match="'nope'"):
        get_prompt("nope", max_retries=0)


def test_fallback_when_langfuse_is_down_is_used_and_never_linked(
    stub: LangfuseStub, captured: SpanCapture
) -> None:
    stub.stop()
    prompt = get_prompt(
        "qa", fallback="Fallback: {{question}}", max_retries=0, fetch_timeout_seconds=1
    )
    assert prompt.is_fallback
    with appsdk.use_prompt(prompt), appsdk.start_observation("gen", as_type="generation"):
        pass
    attributes = captured.by_name("gen").attributes
    assert NAME_KEY not in attributes and VERSION_KEY not in attributes
    assert json.loads(attributes["langfuse.observation.metadata.prompt_fallback"]) == "qa"


def _linked(captured: SpanCapture, name: str) -> tuple[Any, Any]:
    attributes = captured.by_name(name).attributes
    return attributes.get(NAME_KEY), attributes.get(VERSION_KEY)


def test_generations_link_the_prompt_with_an_int_version_everywhere(
    stub: LangfuseStub, captured: SpanCapture
) -> None:
    downstream = InMemorySpanExporter()
    prompt = get_prompt("qa")

    @appsdk.observe(as_type="generation")
    def decorated() -> str:
        return "x"

    @appsdk.observe()
    def plain_span() -> str:
        return "not a generation: never linked"

    with sim.running(exporter=downstream) as simulator, appsdk.use_prompt(prompt):
        decorated()
        plain_span()
        with appsdk.start_observation("context-manager", as_type="generation"):
            pass
        with appsdk.LLMDClient(base_url=simulator.base_url) as client:
            client.complete(model=MODEL, prompt=prompt.compile(question="q"))
            stream = client.chat(
                model=MODEL, messages=[{"role": "user", "content": "q"}], stream=True
            )
            with stream:  # type: ignore[union-attr]
                list(stream)  # type: ignore[call-overload]
    for name in ("decorated", "context-manager", f"text_completion {MODEL}", f"chat {MODEL}"):
        name_value, version = _linked(captured, name)
        assert (name_value, version) == ("qa", 2), name
        assert type(version) is int
    assert _linked(captured, "plain_span") == (None, None)


def test_the_client_compiles_a_prompt_and_takes_its_config(
    stub: LangfuseStub, captured: SpanCapture
) -> None:
    prompt = get_prompt("qa")
    with sim.running() as simulator, appsdk.LLMDClient(base_url=simulator.base_url) as client:
        client.complete(model=MODEL, prompt=prompt, variables={"question": "why?"})
        client.complete(model=MODEL, prompt=prompt, variables={"question": "why?"}, temperature=0.9)
    first, second = (r.body for r in simulator.received)
    assert first["prompt"] == "Answer briefly: why?"
    assert first["temperature"] == 0.1 and first["max_tokens"] == 5
    assert second["temperature"] == 0.9  # the call overrides the prompt's config
    assert _linked_all(captured) == [("qa", 2), ("qa", 2)]


def _linked_all(captured: SpanCapture) -> list[tuple[Any, Any]]:
    return [
        (o.attributes.get(NAME_KEY), o.attributes.get(VERSION_KEY))
        for o in captured.observations()
        if o.type == "generation"
    ]


def test_local_prompt_folder_without_langfuse(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "qa.json").write_text(
        json.dumps(
            {
                "name": "qa",
                "type": "chat",
                "versions": [
                    {
                        "version": 1,
                        "labels": ["production"],
                        "prompt": [{"role": "user", "content": "Q: {{question}}"}],
                        "config": {"model": MODEL, "temperature": 0.2},
                    },
                    {
                        "version": 2,
                        "labels": ["staging"],
                        "prompt": [{"role": "user", "content": "Question: {{question}}"}],
                    },
                ],
            }
        )
    )
    prompt = get_prompt("qa", folder=folder)
    assert isinstance(prompt, LocalPrompt) and prompt.version == 1
    assert get_prompt("qa", folder=folder, label="latest").version == 2
    with (
        capture_spans() as captured,
        sim.running() as simulator,
        appsdk.LLMDClient(base_url=simulator.base_url) as client,
    ):
        client.chat(prompt=prompt, variables={"question": "why?"})
        assert simulator.received[0].body["model"] == MODEL
        assert simulator.received[0].body["messages"] == [{"role": "user", "content": "Q: why?"}]
    assert _linked_all(captured) == [("qa", 1)]
    with pytest.raises(PromptError, match="fallback="):
        get_prompt("missing", folder=folder)
    assert get_prompt("missing", folder=folder, fallback="F").is_fallback
