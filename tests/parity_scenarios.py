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


def _run(sdk: str, name: str, url: str) -> None:
    keys = {"public_key": "pk-lf-parity", "secret_key": "sk-lf-parity"}
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
