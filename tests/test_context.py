"""Context that survives real code: tasks, gather, threads, generators, cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import appsdk
from appsdk.testing import SpanCapture, capture_spans


async def test_gathered_tasks_each_get_their_own_child(captured: SpanCapture) -> None:
    @appsdk.observe(as_type="tool")
    async def tool(i: int) -> int:
        await asyncio.sleep(0.001 * (5 - i))
        return i

    @appsdk.observe(as_type="agent")
    async def agent(run: int) -> list[int]:
        return list(await asyncio.gather(*(tool(i) for i in range(5))))

    await asyncio.gather(agent(1), agent(2))
    observations = captured.observations()
    agents = {o.id: o for o in observations if o.name == "agent"}
    tools = [o for o in observations if o.name == "tool"]
    assert len(agents) == 2 and len(tools) == 10
    for t in tools:
        assert t.parent_id in agents
        assert t.trace_id == agents[t.parent_id].trace_id
    # each agent's five tools, none crossed over
    assert sorted(sum(t.parent_id == a for t in tools) for a in agents) == [5, 5]


def test_threads_continue_the_trace_with_the_executor_helper(captured: SpanCapture) -> None:
    @appsdk.observe()
    def fetch(i: int) -> int:
        return i

    @appsdk.observe()
    def fan_out() -> list[int]:
        with appsdk.ContextThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(fetch, range(8)))

    @appsdk.observe()
    def with_plain_thread() -> None:
        thread = threading.Thread(target=appsdk.wrap_context(fetch), args=(99,))
        thread.start()
        thread.join()

    fan_out()
    with_plain_thread()
    parent = captured.by_name("fan_out")
    fetched = [o for o in captured.observations() if o.name == "fetch"]
    assert sum(o.parent_id == parent.id for o in fetched) == 8
    assert any(o.parent_id == captured.by_name("with_plain_thread").id for o in fetched)


def test_trace_attributes_reach_every_span_inside_the_block(captured: SpanCapture) -> None:
    @appsdk.observe()
    def step() -> None:
        with appsdk.start_observation("inner"):
            pass

    outer = appsdk.trace_attributes(user_id="u-1", session_id="s-1", tags=["a"], trace_name="qa")
    with outer, appsdk.trace_attributes(tags=["b"], metadata={"tier": "gold"}):
        step()
    step()
    inside = [o for o in captured.observations() if o.attributes.get("user.id")]
    assert {o.name for o in inside} == {"step", "inner"}
    for o in inside:
        assert o.attributes["session.id"] == "s-1"
        assert list(o.attributes["langfuse.trace.tags"]) == ["a", "b"]
        assert o.attributes["langfuse.trace.name"] == "qa"
        assert json.loads(o.attributes["langfuse.trace.metadata.tier"]) == "gold"
    assert len(captured.observations()) == 4  # the step outside the block has none


def test_user_ids_can_be_pseudonymized_by_the_policy() -> None:
    policy = appsdk.Policy(pseudonymize_user_ids=True, pseudonym_key="k")
    with (
        capture_spans(policy=policy) as c,
        appsdk.trace_attributes(user_id="alice@example.com"),
        appsdk.start_observation("s"),
    ):
        pass
    user = c.by_name("s").attributes["user.id"]
    assert user.startswith("user-") and "alice" not in user


async def test_a_cancelled_call_still_ends_its_observation(captured: SpanCapture) -> None:
    started = asyncio.Event()

    @appsdk.observe()
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    obs = captured.by_name("slow")
    assert obs.level == "ERROR" and obs.status_message == "CancelledError"


def test_a_generator_closed_early_ends_its_observation(captured: SpanCapture) -> None:
    @appsdk.observe()
    def tokens() -> Iterator[str]:
        yield from ("a", "b", "c")

    stream = tokens()
    assert next(stream) == "a"
    stream.close()  # type: ignore[attr-defined]
    assert captured.by_name("tokens").output == "a"
    assert appsdk.get_current_trace_id() is None  # nothing leaked into the caller's context


def test_generation_updates_are_written_with_langfuse_types(captured: SpanCapture) -> None:
    first_token = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    with appsdk.start_observation("llm", as_type="generation", model="llama-3") as gen:
        gen.update(
            usage={"input": 10, "output": 5, "bogus": -1},
            cost={"total": 0.25},
            model_parameters={"temperature": 0.2},
            completion_start_time=first_token,
            level="LOUD",
        )
        assert appsdk.get_current_observation_id() == gen.id
    attrs = captured.by_name("llm").attributes
    assert json.loads(attrs["langfuse.observation.usage_details"]) == {"input": 10, "output": 5}
    assert json.loads(attrs["langfuse.observation.cost_details"]) == {"total": 0.25}
    assert attrs["langfuse.observation.completion_start_time"] == "2026-01-01T12:00:00+00:00"
    assert "langfuse.observation.level" not in attrs  # LOUD is not a Langfuse level


def test_prompt_links_are_int_versions_and_never_fallbacks(captured: SpanCapture) -> None:
    class Prompt:
        def __init__(self, version: object, fallback: bool) -> None:
            self.name, self.version, self.is_fallback = "qa", version, fallback

    with appsdk.start_observation("linked", as_type="generation", prompt=Prompt(3, False)):
        pass
    with appsdk.start_observation("fallback", as_type="generation", prompt=Prompt(3, True)):
        pass
    with appsdk.start_observation(
        "string-version", as_type="generation", prompt=Prompt("3", False)
    ):
        pass
    linked = captured.by_name("linked").attributes
    assert linked["langfuse.observation.prompt.version"] == 3
    for name in ("fallback", "string-version"):
        assert "langfuse.observation.prompt.name" not in captured.by_name(name).attributes
    fallback = captured.by_name("fallback").attributes
    assert json.loads(fallback["langfuse.observation.metadata.prompt_fallback"]) == "qa"


def test_start_observation_without_configure_is_a_harmless_noop() -> None:
    with appsdk.start_observation("nothing", as_type="generation") as obs:
        obs.update(output="x", usage={"input": 1})
    assert appsdk.get_current_trace_id() is None


async def test_executor_and_thread_hand_offs_stay_in_the_trace(captured: SpanCapture) -> None:
    """After configure(), the three usual hand-offs to a thread continue the caller's trace
    (OpenTelemetry's threading instrumentation): no helper, no wrapper in user code."""

    @appsdk.observe(as_type="tool")
    def work(kind: str) -> str:
        with appsdk.start_observation(f"inside {kind}"):
            return kind

    @appsdk.observe(as_type="agent")
    async def agent() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, work, "run_in_executor")
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            pool.submit(work, "submit").result()
        thread = threading.Thread(target=work, args=("thread",))
        thread.start()
        thread.join()

    await agent()
    root = captured.by_name("agent")
    assert root.parent_id is None
    works = {o.output: o for o in captured.observations() if o.name == "work"}
    assert sorted(works) == ["run_in_executor", "submit", "thread"]
    for kind, tool in works.items():
        inside = captured.by_name(f"inside {kind}")
        assert (tool.trace_id, tool.parent_id) == (root.trace_id, root.id), kind
        assert (inside.trace_id, inside.parent_id) == (root.trace_id, tool.id), kind
    assert len(captured.observations()) == 7


def test_work_submitted_outside_any_observation_starts_its_own_trace(
    captured: SpanCapture,
) -> None:
    """Each task runs in its submitter's context, not in that of the span that happened to
    start the pool's worker thread."""

    @appsdk.observe()
    def work(name: str) -> str:
        return name

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:

        @appsdk.observe()
        def first() -> None:
            pool.submit(work, "inside").result()  # starts the worker thread in this span

        first()
        pool.submit(work, "outside").result()
    works = {o.output: o for o in captured.observations() if o.name == "work"}
    assert works["inside"].parent_id == captured.by_name("first").id
    assert works["outside"].parent_id is None
    assert works["outside"].trace_id != works["inside"].trace_id


def test_the_threads_switch_turns_the_instrumentation_off() -> None:
    @appsdk.observe()
    def work() -> None:
        pass

    @appsdk.observe()
    def hand_off() -> None:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    with capture_spans(instrument_threads=False) as off:
        hand_off()
    assert off.by_name("work").parent_id is None  # a new trace, as without appsdk
    assert off.by_name("work").trace_id != off.by_name("hand_off").trace_id
    with capture_spans() as on:  # the default turns it back on
        hand_off()
    assert on.by_name("work").parent_id == on.by_name("hand_off").id


def test_trace_attributes_reach_threads_only_through_the_context_helpers(
    captured: SpanCapture,
) -> None:
    """The instrumentation carries OpenTelemetry's context (the trace, the parent); the
    helpers carry every context variable, ``trace_attributes`` and ``use_prompt`` too."""

    @appsdk.observe()
    def work(via: str) -> None:
        pass

    @appsdk.observe()
    def parent() -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(work, "plain").result()
        with appsdk.ContextThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(work, "helper").result()

    with appsdk.trace_attributes(user_id="u-7"):
        parent()
    root = captured.by_name("parent")
    works = {o.input["args"][0]: o for o in captured.observations() if o.name == "work"}
    assert {o.parent_id for o in works.values()} == {root.id}
    assert root.attributes["user.id"] == works["helper"].attributes["user.id"] == "u-7"
    assert "user.id" not in works["plain"].attributes


def test_the_instrumentation_is_loaded_by_configure_not_by_import() -> None:
    code = (
        "import sys, appsdk\n"
        "name = 'opentelemetry.instrumentation.threading'\n"
        "print(name in sys.modules)\n"
        "appsdk.configure(local_store='never', instrument_threads=False)\n"
        "print(name in sys.modules)\n"
        "appsdk.configure(local_store='never')\n"
        "from opentelemetry.instrumentation.threading import ThreadingInstrumentor\n"
        "print(ThreadingInstrumentor().is_instrumented_by_opentelemetry)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"], out.stderr


def test_appsdks_own_workers_never_join_the_trace_they_were_started_in() -> None:
    """The feedback worker starts at the first rating, inside the request that gave it; with
    threads instrumented and httpx instrumented globally, its deliveries stay out of that
    request's trace (and every later one's)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from appsdk.testing import capture_spans
    from tests.langfuse_stub import langfuse_stub

    instrumentor = HTTPXClientInstrumentor()
    with langfuse_stub() as stub, capture_spans(**stub.options()) as capture:
        instrumentor.instrument()
        try:

            @appsdk.observe()
            def handle() -> str:
                trace_id = appsdk.get_current_trace_id()
                appsdk.submit_feedback(trace_id=trace_id, name="helpful", value=True)
                return trace_id or ""

            trace_id = handle()
            assert appsdk.flush(10)
            stub.wait_for(lambda s: len(s.scores) == 1)
        finally:
            instrumentor.uninstrument()
        in_trace = [s.name for s in capture.spans if f"{s.context.trace_id:032x}" == trace_id]
    assert in_trace == ["handle"]
