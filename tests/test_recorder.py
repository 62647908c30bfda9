"""The recorder meets what real apps hand it: it never changes, hangs or slows the call.

Each case runs under the default policy and under ``Policy.full()``: the app sees its own
return values and exceptions, every span ends and none stays current, the next call starts a
trace of its own, and what is recorded is bounded by the policy, whatever the input.

Caller-thread cost of each hostile case is measured by ``make bench`` (benchmarks/recorder.py),
never asserted here: on 2 CPUs every case there stayed under 1 ms per decorated call (the
worst, a lazy sequence of 1M rows, ~0.6 ms for the 200 rows recorded; a short string ~0.1 ms).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from pydantic import BaseModel, computed_field

import appsdk
from appsdk.serialization import render_errors
from appsdk.testing import CapturedObservation, SpanCapture, capture_spans

POLICIES = {"default": None, "full": appsdk.Policy.full()}
CANARY = "canary-8c1f0e55d2"


@pytest.fixture(params=sorted(POLICIES))
def recorded(request: pytest.FixtureRequest) -> Iterator[SpanCapture]:
    with capture_spans(policy=POLICIES[request.param]) as capture:
        yield capture


def _one(capture: SpanCapture, name: str) -> CapturedObservation:
    return capture.by_name(name)


def _recorded_text(capture: SpanCapture) -> str:
    return json.dumps([dict(span.attributes or {}) for span in capture.spans], default=str)


def _no_span_is_current() -> None:
    assert not trace_api.get_current_span().get_span_context().is_valid


# --- It never changes what the app catches -------------------------------------------------


class LazyError(Exception):
    """Formats its message from state that is missing: ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("lazy message state is gone")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def test_an_error_whose_str_raises_reaches_the_caller_and_the_span_ends(
    recorded: SpanCapture,
) -> None:
    @appsdk.observe()
    def handler() -> None:
        raise LazyError()

    @appsdk.observe()
    def next_request() -> str:
        return "ok"

    with pytest.raises(LazyError):
        handler()
    _no_span_is_current()
    assert next_request() == "ok"

    failed, following = _one(recorded, "handler"), _one(recorded, "next_request")
    assert failed.level == "ERROR"
    assert "LazyError" in (failed.status_message or "")
    # The next call on this thread is a trace of its own, not a child of the failed one.
    assert following.parent_id is None and following.trace_id != failed.trace_id


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_hooks_that_raise_while_recording_never_reach_the_app(
    recorded: SpanCapture, kind: str
) -> None:
    class Hostile:
        __slots__ = ("ok",)

        def __init__(self) -> None:
            self.ok = 1

        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name}")

    class BadSequence(Sequence[int]):
        def __len__(self) -> int:
            return 5

        def __getitem__(self, index: Any) -> Any:
            if index == 2:
                raise OSError("the row is gone")
            return index

    class BadLength(Sequence[int]):
        def __len__(self) -> int:
            raise ValueError("no length")

        def __getitem__(self, index: Any) -> Any:
            raise IndexError(index)

    before = render_errors()
    args = (LazyError(), Hostile(), BadSequence(), BadLength())

    if kind == "sync":

        @appsdk.observe(name="hostile")
        def sync_handler(*values: Any) -> Any:
            return values

        result = sync_handler(*args)
    else:

        @appsdk.observe(name="hostile")
        async def async_handler(*values: Any) -> Any:
            return values

        result = await async_handler(*args)

    assert result == args
    _no_span_is_current()
    observation = _one(recorded, "hostile")
    recorded_input = observation.input["args"]
    assert recorded_input[0] == "LazyError: <unprintable LazyError>"
    assert recorded_input[1] == {"ok": 1}
    assert recorded_input[2][:2] == [0, 1] and "not rendered" in recorded_input[2][-1]
    assert "not serializable" in recorded_input[3]
    assert render_errors() >= before + 3


def test_an_application_redactor_that_raises_records_a_placeholder() -> None:
    def broken(text: str) -> str:
        raise RuntimeError("the app's own redactor")

    with capture_spans(policy=appsdk.Policy(redactors=(broken,))) as capture:

        @appsdk.observe()
        def answer(question: str) -> str:
            return "fine"

        assert answer("hello") == "fine"
    # Fail closed, text by text: what the application's redactor could not clear is replaced
    # (the span's name too: it is scrubbed like any text).
    (observation,) = capture.observations()
    assert "hello" not in json.dumps(observation.input)
    assert "[REDACTED:REDACTOR_ERROR]" in json.dumps(observation.input)
    assert observation.level == "DEFAULT"


def test_a_transform_that_raises_leaves_the_stream_to_the_app(recorded: SpanCapture) -> None:
    def transform(items: Any) -> str:
        raise TypeError("cannot join")

    @appsdk.observe(transform_to_string=transform)
    def tokens() -> Iterator[str]:
        yield from ("a", "b")

    assert list(tokens()) == ["a", "b"]
    _no_span_is_current()
    assert _one(recorded, "tokens").level == "DEFAULT"


# --- It records data, not machinery --------------------------------------------------------


def test_a_shared_client_passed_in_is_a_placeholder_under_every_policy(
    recorded: SpanCapture,
) -> None:
    gateway = appsdk.LLMDClient(
        base_url=f"https://svc:{CANARY}@gateway.invalid/v1", api_key=f"sk-{CANARY}"
    )
    plain = httpx.Client(
        base_url=f"https://svc:{CANARY}@host.invalid", headers={"Authorization": CANARY}
    )

    class RagService:
        def __init__(self) -> None:
            self.client = gateway
            self.lock = threading.Lock()
            self.log = logging.getLogger("rag")
            self.top_k = 3

    @appsdk.observe()
    def answer(client: Any, http: Any, service: Any, question: str) -> str:
        return "ok"

    try:
        assert answer(gateway, plain, RagService(), "q") == "ok"
    finally:
        gateway.close()
        plain.close()
    observation = _one(recorded, "answer")
    assert observation.input["args"][:3] == [
        "<LLMDClient>",
        "<Client>",
        {"client": "<LLMDClient>", "lock": "<lock>", "log": "<Logger>", "top_k": 3},
    ]
    assert CANARY not in _recorded_text(recorded)


def test_fields_are_read_without_running_the_apps_code(recorded: SpanCapture) -> None:
    calls: list[str] = []

    class Answer(BaseModel):
        text: str

        @computed_field  # type: ignore[prop-decorator]
        @property
        def expensive(self) -> str:
            calls.append("computed_field")
            return "computed"

    class Slotted:
        __slots__ = ("set_one", "unset_one")

        def __init__(self) -> None:
            self.set_one = 1

        def __getattr__(self, name: str) -> Any:
            calls.append(f"__getattr__ {name}")
            return "made up"

    class WithProperty:
        def __init__(self) -> None:
            self.value = 1

        @property
        def loud(self) -> int:
            calls.append("property")
            return 2

    @appsdk.observe()
    def echo(*values: Any) -> Any:
        return "ok"

    echo(Answer(text="t"), Slotted(), WithProperty())
    assert calls == []
    assert _one(recorded, "echo").input["args"] == [
        {"text": "t"},
        {"set_one": 1, "unset_one": None},
        {"value": 1},
    ]


def test_a_dataclass_is_read_in_place_not_deep_copied(recorded: SpanCapture) -> None:
    copies: list[int] = []

    class Leaf:
        def __init__(self) -> None:
            self.n = 1

        def __deepcopy__(self, memo: Any) -> Leaf:
            copies.append(1)
            return Leaf()

    @dataclasses.dataclass
    class Batch:
        rows: list[Leaf]

    @appsdk.observe()
    def ingest(batch: Batch) -> int:
        return len(batch.rows)

    assert ingest(Batch([Leaf() for _ in range(1000)])) == 1000
    assert copies == []  # dataclasses.asdict would deep-copy every leaf
    rows = _one(recorded, "ingest").input["args"][0]["rows"]
    assert rows[0] == {"n": 1}


# --- It is bounded by construction ---------------------------------------------------------


def test_cycles_through_any_container_are_named_not_followed(recorded: SpanCapture) -> None:
    looped: list[Any] = []
    looped.extend([looped, looped, looped])  # never returned before
    document: dict[str, Any] = {"title": "doc"}
    document["chunks"] = [{"text": f"chunk {i}", "document": document} for i in range(8)]
    mapping: dict[str, Any] = {}
    mapping["self"] = mapping

    @appsdk.observe()
    def index(*values: Any) -> str:
        return "ok"

    assert index(looped, document, mapping) == "ok"
    args = _one(recorded, "index").input["args"]
    assert args[0] == ["<list>", "<list>", "<list>"]
    assert args[1]["chunks"][0] == {"text": "chunk 0", "document": "<dict>"}
    assert args[2] == {"self": "<dict>"}


def test_lazy_and_large_values_are_read_only_as_far_as_they_are_recorded() -> None:
    reads: list[int] = []

    class Rows(Sequence[int]):
        def __len__(self) -> int:
            return 1_000_000

        def __getitem__(self, index: Any) -> Any:
            reads.append(index)
            return index

    policy = appsdk.Policy(max_items=50)
    with capture_spans(policy=policy) as capture:

        @appsdk.observe()
        def load(*values: Any) -> str:
            return "ok"

        # Each of these cost 130 ms to 1 s and up to +383 MB before; now < 1 ms (make bench).
        assert load(Rows(), range(10**7), bytearray(20 * 1024 * 1024), frozenset(range(10**5)))
    args = capture.by_name("load").input["args"]
    assert len(reads) == 50
    assert args[0][-1] == "[truncated 999950 items]"
    assert args[1][:3] == [0, 1, 2] and args[1][-1] == "[truncated 9999950 items]"
    assert len(args[2]) <= policy.max_chars + 64
    assert len(args[3]) == 51


def test_one_value_is_bounded_as_a_whole_not_per_string() -> None:
    policy = appsdk.Policy(max_value_chars=10_000)
    with capture_spans(policy=policy) as capture:

        @appsdk.observe()
        def big(value: Any) -> str:
            return "ok"

        # 200 strings of 20,000 characters: 4 MB per call before, each within max_chars.
        big([{"text": "x" * 20_000, "n": i} for i in range(200)])
    recorded = capture.spans[0].attributes or {}
    assert len(str(recorded["langfuse.observation.input"])) < 10_000 + 200
    assert "truncated" in str(recorded["langfuse.observation.input"])


def test_nesting_is_cut_at_langfuses_depth(recorded: SpanCapture) -> None:
    value: Any = "bottom"
    for _ in range(30):
        value = {"d": value}

    @appsdk.observe()
    def deep(v: Any) -> str:
        return "ok"

    deep(value)
    # input {"args": [v]}: the input dict is depth 1, the list 2, v 3 ... "<dict>" at 20.
    node = _one(recorded, "deep").input["args"][0]
    levels = 0
    while isinstance(node, dict):
        node = node["d"]
        levels += 1
    assert node == "<dict>" and levels == 17


def test_array_and_frame_like_values_are_sliced_before_copying(recorded: SpanCapture) -> None:
    touched: list[str] = []

    class FakeArray:  # numpy's interface, as far as the recorder reads it
        ndim = 1

        def __init__(self, size: int) -> None:
            self.size = size

        def __len__(self) -> int:
            return self.size

        def __getitem__(self, index: int) -> Any:
            return float(index)

        def item(self) -> float:
            raise AssertionError("a 1-d array is not a scalar")

        def tolist(self) -> list[float]:
            touched.append("tolist")
            return [0.0] * self.size

    FakeArray.__module__ = "numpy"

    class FakeFrame:
        def head(self, n: int) -> Any:
            touched.append(f"head {n}")
            return self

        def to_dict(self) -> dict[str, Any]:
            return {"col": {"0": 1}}

    FakeFrame.__module__ = "pandas.core.frame"

    @appsdk.observe()
    def embed(*values: Any) -> str:
        return "ok"

    embed(FakeArray(10_000), FakeFrame())
    args = _one(recorded, "embed").input["args"]
    assert "tolist" not in touched
    assert args[0][:2] == [0.0, 1.0]
    assert len(args[0]) in (201, 10_000)  # the default policy's 200 items, or all
    assert args[1] == {"col": {"0": 1}}


# --- Field names survive, secrets inside structure are found -------------------------------


class Credentials(NamedTuple):
    user: str
    password: str


def test_secrets_inside_structure_never_leave_under_the_default_policy(
    captured: SpanCapture,
) -> None:
    tool_arguments = json.dumps({"query": "weather", "api_key": CANARY})

    @appsdk.observe()
    def call_tool(*values: Any, **named: Any) -> str:
        return json.dumps({"password": CANARY, "answer": "sunny"})

    call_tool(
        Credentials("app", CANARY),
        urlsplit(f"postgresql://app:{CANARY}@db.internal/prod"),
        tool_arguments,
        {"role": "tool", "content": tool_arguments},
        {"tool_calls": [{"function": {"name": "lookup", "arguments": tool_arguments}}]},
    )
    observation = captured.by_name("call_tool")
    assert CANARY not in _recorded_text(captured)
    args = observation.input["args"]
    assert args[0] == {"user": "app", "password": "[REDACTED:SECRET]"}
    assert args[1]["netloc"] == "app:***@db.internal"
    # JSON text keeps its own formatting where nothing was replaced in it.
    assert json.loads(args[2]) == {"query": "weather", "api_key": "[REDACTED:SECRET]"}
    output = observation.attributes["langfuse.observation.output"]
    assert json.loads(output) == {"password": "[REDACTED:SECRET]", "answer": "sunny"}


def test_json_text_without_secret_keys_is_recorded_byte_for_byte(captured: SpanCapture) -> None:
    text = '{"city":"Paris",  "days": [1,2]}'

    @appsdk.observe()
    def forecast(arguments: str) -> str:
        return arguments

    forecast(text)
    assert captured.by_name("forecast").attributes["langfuse.observation.output"] == text


# --- No canary reaches any sink ------------------------------------------------------------


class HeaderError(Exception):
    pass


def _hostile_call(policy_name: str) -> None:
    """One request of a real RAG app: the shared client passed in, an error on the way."""
    gateway = appsdk.LLMDClient(
        base_url=f"http://svc:{CANARY}@127.0.0.1:9/v1", api_key=f"sk-proj-{CANARY}abcdef"
    )

    @appsdk.observe()
    def handler(client: Any, *values: Any) -> str:
        return json.dumps({"password": CANARY, "answer": "ok"}) if values else "ok"

    @appsdk.observe()
    def failing(client: Any) -> None:
        raise LazyError()

    try:
        if policy_name == "default":  # content the default policy must redact
            handler(
                gateway,
                Credentials("app", CANARY),
                urlsplit(f"postgresql://app:{CANARY}@db/prod"),
                json.dumps({"api_key": CANARY}),
                {"tool_calls": [{"function": {"arguments": json.dumps({"token": CANARY})}}]},
                ValueError({"password": CANARY}),
                f"GET /v1 HTTP/1.1\r\nAuthorization: Token {CANARY}\r\napi-key: {CANARY}",
                {"DB_PASS": CANARY, "SMTP_PWD": CANARY, "PGPASS": CANARY, "signing_key": CANARY},
                f"https://app.example/cb?password%3D{CANARY}",
            )
        else:  # under full, content is recorded as given; machinery never is
            handler(gateway)
        with pytest.raises(LazyError):
            failing(gateway)
    finally:
        gateway.close()


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_no_canary_in_otlp_langfuse_store_cli_or_logs(
    policy_name: str, receiver: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from typer.testing import CliRunner

    from appsdk.cli import app as cli

    store = tmp_path / "store" / "traces.db"
    appsdk.configure(
        policy=POLICIES[policy_name],
        langfuse_public_key="pk-lf-canary",
        langfuse_secret_key="sk-lf-canary",
        langfuse_base_url=receiver.url,
        otlp_endpoints=(receiver.traces_url,),
        local_store="always",
        store_path=store,
    )
    with caplog.at_level(logging.DEBUG):
        _hostile_call(policy_name)
        assert appsdk.flush(10)
    appsdk.shutdown()
    wire = b"".join(request.body for request in receiver.requests)
    assert b"handler" in wire and b"<LLMDClient>" in wire
    assert CANARY.encode() not in wire
    stored = b"".join(path.read_bytes() for path in store.parent.iterdir())
    assert b"handler" in stored and CANARY.encode() not in stored
    shown = CliRunner().invoke(cli, ["traces", "show", "last", "--db", str(store)])
    assert shown.exit_code == 0 and "failing" in shown.output
    assert CANARY not in shown.output
    assert CANARY not in caplog.text


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_no_canary_in_the_spool_or_the_feedback_outbox(
    policy_name: str, reserved: Any, tmp_path: Path
) -> None:
    import gzip
    import sqlite3

    port = reserved.getsockname()[1]
    spool, outbox = tmp_path / "spool.db", tmp_path / "outbox.db"
    appsdk.configure(
        policy=POLICIES[policy_name],
        langfuse_public_key="pk-lf-canary",
        langfuse_secret_key="sk-lf-canary",
        langfuse_base_url=f"http://127.0.0.1:{port}",
        spool_path=spool,
        feedback_outbox=outbox,
        local_store="never",
    )
    _hostile_call(policy_name)
    appsdk.submit_feedback(
        trace_id="ab" * 16,
        name="helpful",
        value=0,
        comment=f"it printed Authorization: Bearer {CANARY}",
    )
    appsdk.flush(2)
    appsdk.shutdown(timeout_s=2)
    with sqlite3.connect(spool) as connection:
        bodies = [row[0] for row in connection.execute("SELECT body FROM spool")]
    assert bodies
    spooled = b"".join(
        gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body for body in bodies
    )
    assert b"handler" in spooled and CANARY.encode() not in spooled
    with sqlite3.connect(outbox) as connection:
        rows = repr(connection.execute("SELECT * FROM sqlite_master").fetchall())
        for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows += repr(connection.execute(f"SELECT * FROM {table}").fetchall())
    assert "helpful" in rows
    if policy_name == "default":  # under full the comment is recorded as the user wrote it
        assert CANARY not in rows


def test_a_rating_of_ones_own_trace_never_exports_another_users_span() -> None:
    """Sampling at 0%, kept only when rated badly: user A's request fails with an error whose
    ``__str__`` raises, then user B's request runs on the same thread. A rates A's trace."""
    from appsdk.sampling import Sampling

    sampling = Sampling(default_ratio=0.0, negative_feedback=("helpful == 0",))
    traces: dict[str, str] = {}
    with capture_spans(sampling=sampling) as capture:

        @appsdk.observe()
        def handle(user: str) -> str:
            traces[user] = appsdk.get_current_trace_id() or ""
            if user == "alice":
                raise LazyError()
            return f"answer for {user}"

        with appsdk.trace_attributes(user_id="alice"), pytest.raises(LazyError):
            handle("alice")
        with appsdk.trace_attributes(user_id="bob"):
            assert handle("bob") == "answer for bob"
        appsdk.submit_feedback(trace_id=traces["alice"], name="helpful", value=False)
        appsdk.flush()
        exported = capture.spans
    assert traces["alice"] != traces["bob"]
    assert {f"{span.context.trace_id:032x}" for span in exported} == {traces["alice"]}
    assert [(span.attributes or {}).get("user.id") for span in exported] == ["alice"]


def test_names_given_to_an_update_are_cut_and_never_raise(recorded: SpanCapture) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    @appsdk.observe()
    def step() -> str:
        appsdk.update_current_observation(
            name="n" * 1_000_000, version=Unprintable(), model="m" * 10_000
        )
        return "ok"

    assert step() == "ok"
    (span,) = recorded.spans
    assert len(span.name) < 300 and span.name.endswith("...[truncated 999800 chars]")
    attributes = span.attributes or {}
    assert attributes["langfuse.version"] == "<unprintable Unprintable>"
    assert len(str(attributes["langfuse.observation.model.name"])) < 300


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.binary(max_size=50)
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=8)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=20) | st.integers(), children, max_size=8)
        | st.frozensets(st.integers(), max_size=5)
    ),
    max_leaves=200,
)


@settings(max_examples=200, deadline=None)
@given(value=_VALUES, max_value_chars=st.integers(min_value=50, max_value=5_000))
def test_any_value_renders_to_json_within_the_budget(value: Any, max_value_chars: int) -> None:
    policy = appsdk.Policy(max_value_chars=max_value_chars, max_chars=1_000, max_items=20)
    for engine in (policy.engine, appsdk.Policy.full(max_value_chars=max_value_chars).engine):
        rendered = engine.render("inputs", {"args": [value], "kwargs": {}})
        assert rendered is not None
        decoded = json.dumps(json.loads(rendered), ensure_ascii=False)
        # Strings are charged what they record; a scalar item a flat 6 characters (a float's
        # text runs to 24), and each container still open gets one cut marker.
        assert len(decoded) <= 5 * max_value_chars + 1_000


class _GetattributeRaises:
    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute access at all ({name})")


class _DictIsAProperty:
    @property
    def __dict__(self) -> Any:  # type: ignore[override]
        raise RuntimeError("no __dict__")


class _LyingLength(Sequence[int]):
    def __len__(self) -> int:
        return 10**12

    def __getitem__(self, index: Any) -> Any:
        if index > 3:
            raise IndexError(index)
        return index


class _Meta(type):
    def __getattr__(cls, name: str) -> Any:
        raise RuntimeError(f"metaclass {name}")


class _WithMeta(metaclass=_Meta):
    x = 1


class _Node:
    def __init__(self, child: Any) -> None:
        self.child = child


def _linked(length: int) -> Any:
    node: Any = None
    for _ in range(length):
        node = _Node(node)
    return node


def _self_ref_object() -> Any:
    node = _Node(None)
    node.child = [node, {"again": node}]
    return node


SHAPES: dict[str, Callable[[], Any]] = {
    "__getattribute__ raises": _GetattributeRaises,
    "__dict__ is a raising property": _DictIsAProperty,
    "a length of 10**12": _LyingLength,
    "a class whose metaclass __getattr__ raises": lambda: _WithMeta,
    "a linked list of 10,000 objects": lambda: _linked(10_000),
    "an object in a cycle through a list and a dict": _self_ref_object,
    "a running thread": threading.current_thread,
    "a huge int": lambda: 10**5000,
    "nested empty containers": lambda: [[], {}, (), set(), frozenset(), [[[]]]],
    "bytes that are not UTF-8": lambda: b"\xff" * 100_000,
    "a memoryview": lambda: memoryview(b"hello" * 10_000),
    "a dict with 100,000 keys": lambda: {f"k{i}": i for i in range(100_000)},
    "a dict with object keys": lambda: {_Node(None): 1, (1, 2): 2, None: 3, 1.5: 4},
    "a string of 5 MB": lambda: "x" * 5_000_000,
    "an exception holding a secret dict": lambda: ValueError({"password": CANARY}),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_passes_through_unchanged_and_every_span_ends(
    recorded: SpanCapture, shape: str
) -> None:
    value = SHAPES[shape]()

    @appsdk.observe()
    def echo(received: Any) -> Any:
        return received

    assert echo(value) is value
    _no_span_is_current()
    (span,) = recorded.spans
    recorded_input = str((span.attributes or {}).get("langfuse.observation.input", ""))
    # Bounded: the default budget (100,000 characters; 8 MiB under full) plus markers.
    assert len(recorded_input) < 9 * 1024 * 1024


def test_a_card_number_passed_as_a_float_is_redacted(captured: SpanCapture) -> None:
    @appsdk.observe()
    def charge(amount: float, card: float) -> str:
        return "ok"

    charge(12.5, 4111111111111111.0)
    assert captured.by_name("charge").input["args"] == [12.5, "[REDACTED:CARD]"]


def test_a_langfuse_prompt_passed_in_is_data_not_machinery(recorded: SpanCapture) -> None:
    from langfuse.api import Prompt_Text
    from langfuse.model import TextPromptClient

    prompt = TextPromptClient(
        Prompt_Text(
            name="rag-answer", version=2, prompt="Answer {{q}}", config={}, labels=[], tags=[]
        )
    )

    @appsdk.observe(as_type="generation")
    def generate(template: Any) -> str:
        return "ok"

    generate(prompt)
    # What langfuse.observe records of it (its serializer's view), not a placeholder.
    from langfuse._utils.serializer import EventSerializer

    expected = json.loads(EventSerializer().encode(prompt))
    assert _one(recorded, "generate").input["args"][0] == expected != "<TextPromptClient>"
