"""Decorator scenarios run once under ``langfuse.observe`` and once under ``appsdk.observe``.

``python -m tests.parity_scenarios SDK SCENARIO URL`` configures one SDK alone in a fresh
process, exporting to the OTLP receiver at URL as a Langfuse project, runs the scenario with
the user code unchanged (only the import differs), flushes, and prints what the caller got back
as JSON. The scenarios follow langfuse-python's own decorator tests and the edge cases users
hit; tests/test_parity.py compares the decoded OTLP of both runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

Scenario = Callable[[Any, Any], Any]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


@scenario
def nested(observe: Any, lf: Any) -> Any:
    @observe()
    def leaf(text: str) -> str:
        return text.upper()

    @observe(name="pipeline", as_type="chain")
    def root(question: str) -> dict[str, Any]:
        return {"answer": leaf(question), "n": 2}

    return root("why?")


@scenario
def remote_parent(observe: Any, lf: Any) -> Any:
    """A web request that arrived with a traceparent: the app's root is still a root."""
    from opentelemetry import context, propagate

    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    token = context.attach(propagate.extract(carrier))
    try:

        @observe()
        def child() -> str:
            return "c"

        @observe()
        def handler() -> str:
            return child()

        return handler()
    finally:
        context.detach(token)


@scenario
def propagated(observe: Any, lf: Any) -> Any:
    from langfuse import propagate_attributes

    @observe()
    def inner() -> str:
        return "x"

    @observe()
    def outer() -> str:
        return inner()

    with propagate_attributes(
        user_id="u-1", session_id="s-1", tags=["a", "b"], metadata={"k": "v"}, trace_name="t"
    ):
        return outer()


@scenario
def explicit_trace_id(observe: Any, lf: Any) -> Any:
    @observe()
    def handler() -> str:
        return "ok"

    handler(langfuse_trace_id="abcdef0123456789abcdef0123456789")
    return handler(
        langfuse_trace_id="abcdef0123456789abcdef0123456789",
        langfuse_parent_observation_id="0123456789abcdef",
    )


@scenario
def none_after_update(observe: Any, lf: Any) -> Any:
    @observe()
    def handler() -> None:
        lf.update_current_span(output="set inside")

    return handler()


@scenario
def exits(observe: Any, lf: Any) -> Any:
    @observe()
    def leaving() -> None:
        raise SystemExit(3)

    try:
        leaving()
    except SystemExit as exc:
        return exc.code
    return None


@scenario
def errors(observe: Any, lf: Any) -> Any:
    @observe()
    def fails(code: int) -> None:
        raise ValueError(f"bad code {code}")

    try:
        fails(7)
    except ValueError as exc:
        return str(exc)
    return None


@scenario
def generators(observe: Any, lf: Any) -> Any:
    @observe()
    def tokens(count: int) -> Any:
        yield from (f"t{i}" for i in range(count))

    return list(tokens(3))


@scenario
def serialization(observe: Any, lf: Any) -> Any:
    import dataclasses
    import datetime
    import enum
    import math
    import uuid
    from pathlib import Path

    from pydantic import BaseModel, SecretStr

    class Color(str, enum.Enum):  # noqa: UP042 - the (str, Enum) users write
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    @dataclasses.dataclass
    class Point:
        x: int
        y: float

    class Model(BaseModel):
        name: str
        when: datetime.date

    class Slotted:
        __slots__ = ("a", "b")

        def __init__(self) -> None:
            self.a = 1
            self.b = "two"

    class Plain:
        def __init__(self) -> None:
            self.visible = 1
            self._private = "kept by langfuse"
            self.me = self  # a cycle

    values = {
        "bytes": b"hello",
        "bad_bytes": b"\xff\xfe",
        "big": 2**60,
        "negative_big": -(2**60),
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "naive": datetime.datetime(2024, 5, 1, 12, 30),
        "utc": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        "offset": datetime.datetime(
            2024, 5, 1, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        "date": datetime.date(2024, 5, 1),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "path": Path("/tmp/x.txt"),
        "color": Color.RED,
        "level": Level.HIGH,
        "error": ValueError("bad value"),
        "point": Point(1, 2.5),
        "model": Model(name="m", when=datetime.date(2024, 1, 2)),
        "slotted": Slotted(),
        "plain": Plain(),
        "secret": SecretStr("hidden"),
        "a_set": {3},
        "nested": {"a": [{"b": (1, 2)}]},
        None: "none key",
        1: "int key",
        "deep": _deep(25),
    }

    @observe()
    def echo(value: Any) -> Any:
        return value

    echo(values)
    echo(Color.RED)
    echo(2**60)
    echo(math.nan)
    return "done"


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"d": value}
    return value


@scenario
def client_updates(observe: Any, lf: Any) -> Any:
    @observe(as_type="generation")
    def generate() -> str:
        lf.update_current_generation(
            model="m-1",
            usage_details={"input": 3, "output": 5},
            cost_details={"total": 0.5},
            metadata={"a": 1, "text": "é", "skip": None},
            model_parameters={"temperature": 0.2},
        )
        return "out"

    @observe()
    def step() -> str:
        lf.update_current_span(metadata={"k": [1, 2]}, level="WARNING", status_message="slow")
        lf.update_current_span(input={"given": True})
        return generate()

    return step()


@scenario
def unknown_public_key(observe: Any, lf: Any) -> Any:
    @observe()
    def handler() -> str:
        return "ran"

    # (langfuse then stops tracing calls without a key as well: a deviation, see migrating.md)
    return handler(langfuse_public_key="pk-lf-someone-else")


@scenario
def bad_ids(observe: Any, lf: Any) -> Any:
    @observe()
    def handler() -> str:
        return "ran"

    outcomes = []
    for trace_id, parent_id in (("not-hex", None), ("ab" * 16, "not-hex"), ("ab" * 16, None)):
        try:
            outcomes.append(
                handler(langfuse_trace_id=trace_id, langfuse_parent_observation_id=parent_id)
            )
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


@scenario
def io_capture_switched_off(observe: Any, lf: Any) -> Any:
    import os

    os.environ["LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED"] = "false"

    @observe()
    def quiet(text: str) -> str:
        return text

    @observe(capture_input=True, capture_output=True)
    def loud(text: str) -> str:
        return text

    return [quiet("q"), loud("l")]


@scenario
def updates_by_langfuse_names(observe: Any, lf: Any) -> Any:
    from langfuse import propagate_attributes

    @observe(as_type="generation")
    def generate() -> str:
        lf.update_current_generation(
            name="renamed", version="v2", usage_details={"input": 1}, cost_details={"input": 0.1}
        )
        return "x"

    @observe()
    def root() -> str:
        # Opened inside the root: langfuse puts these on the root as well.
        with propagate_attributes(user_id="u-2", tags=["late"]):
            return generate()

    return root()


@scenario
def tracing_disabled(observe: Any, lf: Any) -> Any:
    @observe()
    def handler() -> str:
        return "untraced"

    return handler()


def _run(sdk: str, name: str, url: str) -> None:
    keys = {"public_key": "pk-lf-parity", "secret_key": "sk-lf-parity"}
    if name == "tracing_disabled":
        import os

        os.environ["LANGFUSE_TRACING_ENABLED"] = "false"
    if sdk == "langfuse":
        from langfuse import Langfuse, observe

        client = Langfuse(base_url=url, **keys)
        flush = client.flush
    else:
        import appsdk
        from appsdk import observe  # type: ignore[assignment]

        appsdk.configure(
            policy=appsdk.Policy.full(),
            langfuse_public_key=keys["public_key"],
            langfuse_secret_key=keys["secret_key"],
            langfuse_base_url=url,
        )
        from langfuse import get_client

        client = get_client()

        def flush() -> None:
            appsdk.flush()

    result = SCENARIOS[name](observe, client)
    flush()
    print(json.dumps(result))


if __name__ == "__main__":
    _run(*sys.argv[1:4])
