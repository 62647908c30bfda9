"""appsdk.observe against langfuse.observe: the same observations, by Langfuse's contract."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from langfuse import observe as langfuse_observe

import appsdk
from appsdk.testing import SpanCapture
from tests.servers import OTLPReceiver, ReceivedSpan

CONTRACT_KEYS = (
    "langfuse.observation.type",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "langfuse.observation.level",
    "langfuse.observation.status_message",
)


def _configure(receiver: OTLPReceiver, **options: Any) -> None:
    appsdk.configure(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-eq",
        langfuse_base_url=receiver.url,
        **options,
    )


def _build(observe: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    """The same user code, decorated by the given decorator."""

    @observe()
    def leaf(text: str, *, repeat: int = 1) -> str:
        return text * repeat

    @observe(name="pipeline", as_type="chain")
    def root(question: str) -> dict[str, Any]:
        return {"answer": leaf(question, repeat=2), "sources": [1, 2]}

    @observe(as_type="generation")
    def generate(prompt: str) -> str:
        return f"echo: {prompt}"

    @observe()
    def fails(code: int) -> None:
        raise ValueError(f"bad code {code}")

    @observe()
    def empty_error() -> None:
        raise KeyError()

    @observe()
    def stream(count: int) -> Iterator[str]:
        yield from (f"t{i}" for i in range(count))

    @observe(as_type="tool")
    async def tool(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    @observe()
    async def astream(count: int) -> AsyncIterator[str]:
        for i in range(count):
            yield f"a{i}"

    @observe(capture_input=False, capture_output=False)
    def private(secret: str) -> str:
        return secret

    class Retriever:
        @observe(as_type="retriever")
        def search(self, query: str, k: int = 3) -> list[str]:
            return [f"{query}-{i}" for i in range(k)]

    return {
        "root": root,
        "generate": generate,
        "fails": fails,
        "empty_error": empty_error,
        "stream": stream,
        "tool": tool,
        "astream": astream,
        "private": private,
        "retriever": Retriever().search,
    }


async def _exercise(functions: dict[str, Callable[..., Any]]) -> None:
    functions["root"]("why?")
    functions["generate"]("hello")
    with pytest.raises(ValueError):
        functions["fails"](7)
    with pytest.raises(KeyError):
        functions["empty_error"]()
    assert list(functions["stream"](3)) == ["t0", "t1", "t2"]
    assert await functions["tool"](2, y=3) == 5
    assert [chunk async for chunk in functions["astream"](2)] == ["a0", "a1"]
    functions["private"]("do-not-record")
    functions["retriever"]("q", k=2)


def _observations(spans: list[ReceivedSpan]) -> list[dict[str, Any]]:
    by_id = {s.span_id: s for s in spans}
    rows = []
    for span in sorted(spans, key=lambda s: s.name):
        parent = by_id.get(span.parent_span_id or "")
        rows.append(
            {
                "name": span.name,
                "parent": parent.name if parent else None,
                **{key: span.attributes.get(key) for key in CONTRACT_KEYS},
            }
        )
    return rows


async def _record(receiver: OTLPReceiver, observe: Callable[..., Any]) -> list[dict[str, Any]]:
    before = len(receiver.spans)
    await _exercise(_build(observe))
    assert appsdk.flush()
    spans = receiver.wait_for_spans(before + 10)[before:]
    return _observations(spans)


async def test_appsdk_observe_records_what_langfuse_observe_records(
    receiver: OTLPReceiver,
) -> None:
    _configure(receiver)
    theirs = await _record(receiver, langfuse_observe)
    ours = await _record(receiver, appsdk.observe)
    assert ours == theirs
    by_name = {row["name"]: row for row in ours}
    # spot-check the contract itself, not just agreement
    assert by_name["leaf"]["parent"] == "pipeline"
    assert json.loads(by_name["leaf"]["langfuse.observation.input"]) == {
        "args": ["why?"],
        "kwargs": {"repeat": 2},
    }
    assert by_name["fails"]["langfuse.observation.level"] == "ERROR"
    assert by_name["fails"]["langfuse.observation.status_message"] == "bad code 7"
    assert by_name["empty_error"]["langfuse.observation.status_message"] == "KeyError"
    assert by_name["stream"]["langfuse.observation.output"] == "t0t1t2"
    assert by_name["search"]["langfuse.observation.type"] == "retriever"
    assert json.loads(by_name["search"]["langfuse.observation.input"]) == {
        "args": ["q"],
        "kwargs": {"k": 2},
    }
    assert by_name["private"]["langfuse.observation.input"] is None


async def test_langfuse_and_appsdk_decorators_nest_into_one_trace_either_way(
    receiver: OTLPReceiver,
) -> None:
    _configure(receiver)

    @appsdk.observe()
    def ours_inner() -> str:
        return "x"

    @langfuse_observe()
    def theirs_outer() -> str:
        return ours_inner()

    @langfuse_observe()
    def theirs_inner() -> str:
        return "y"

    @appsdk.observe()
    def ours_outer() -> str:
        return theirs_inner()

    theirs_outer()
    ours_outer()
    assert appsdk.flush()
    spans = {s.name: s for s in receiver.wait_for_spans(4)}
    assert spans["ours_inner"].parent_span_id == spans["theirs_outer"].span_id
    assert spans["ours_inner"].trace_id == spans["theirs_outer"].trace_id
    assert spans["theirs_inner"].parent_span_id == spans["ours_outer"].span_id
    # exported once each: langfuse's own span processor is kept off the provider
    assert len(receiver.spans) == 4


def test_special_kwargs_set_the_trace_and_parent(receiver: OTLPReceiver) -> None:
    _configure(receiver)

    @appsdk.observe()
    def handler(x: int) -> int:
        return x

    assert handler(1, langfuse_trace_id="ab" * 16, langfuse_parent_observation_id="cd" * 8) == 1
    assert appsdk.flush()
    (span,) = receiver.wait_for_spans(1)
    assert span.trace_id == "ab" * 16 and span.parent_span_id == "cd" * 8
    assert json.loads(span.attributes["langfuse.observation.input"]) == {"args": [1], "kwargs": {}}


def test_decorated_functions_run_untraced_before_configure() -> None:
    @appsdk.observe()
    def plain(x: int) -> int:
        return x * 2

    assert plain(2, langfuse_trace_id="ab" * 16) == 4
    assert appsdk.get_current_trace_id() is None


def test_returning_none_keeps_an_output_set_by_an_update(captured: SpanCapture) -> None:
    @appsdk.observe()
    def handler() -> None:
        appsdk.update_current_observation(output="set inside")

    handler()
    assert captured.by_name("handler").output == "set inside"


def test_an_exit_ends_the_observation_without_marking_it_an_error(captured: SpanCapture) -> None:
    @appsdk.observe()
    def leaving() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        leaving()
    assert captured.by_name("leaving").level == "DEFAULT"


def test_a_long_generator_keeps_only_what_its_output_can_hold(captured: SpanCapture) -> None:
    @appsdk.observe()
    def rows() -> Iterator[dict[str, int]]:
        yield from ({"row": i} for i in range(5_000))

    assert sum(1 for _ in rows()) == 5_000
    observation = captured.by_name("rows")
    assert observation.output[:2] == [{"row": 0}, {"row": 1}]
    assert len(observation.output) <= 202  # max_items, then the truncation marker
    assert (
        json.loads(
            observation.attributes["langfuse.observation.metadata.output_items_not_recorded"]
        )
        == 5_000 - 201
    )
