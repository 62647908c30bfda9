"""Trace-level attributes for every span started in a block, and context across threads.

``trace_attributes`` follows Langfuse's ``propagate_attributes`` contract: user, session, tags,
metadata and trace name land on every span started inside the block, whoever starts it
(appsdk, langfuse's own decorator, HTTP instrumentation), so any of them can carry the trace's
attributes to Langfuse.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Span

from appsdk import semconv, span_policy
from appsdk.policy import CaptureMode, PolicyEngine

__all__ = ["ContextThreadPoolExecutor", "known_at_root", "trace_attributes", "wrap_context"]

P = ParamSpec("P")
R = TypeVar("R")


class _Block:
    """The trace attributes of a block as given, and as rendered under each policy met."""

    __slots__ = ("given", "rendered")

    def __init__(self, given: dict[str, Any]) -> None:
        self.given = given
        self.rendered: dict[PolicyEngine, dict[str, Any]] = {}

    def render(self, policy: PolicyEngine) -> dict[str, Any]:
        rendered = self.rendered.get(policy)
        if rendered is None:
            rendered = self.rendered[policy] = _render(self.given, policy)
        return rendered


def _render(given: Mapping[str, Any], policy: PolicyEngine) -> dict[str, Any]:
    scrub = policy.metadata_mode is not CaptureMode.FULL
    redact = policy.redactor.redact_repeated
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key == semconv.USER_ID:
            out[key] = policy.identity(value, "user")
        elif key == semconv.SESSION_ID:
            out[key] = policy.identity(value, "session")
        elif key == semconv.LF_TRACE_NAME:
            out[key] = redact(value) if scrub else value
        elif key == semconv.LF_TRACE_TAGS:
            out[key] = tuple(redact(tag) for tag in value) if scrub else value
    metadata = given.get("metadata")
    mode = policy.metadata_mode
    if metadata and mode is not CaptureMode.NONE:
        prepared = policy.prepare(metadata, mode is CaptureMode.REDACTED)
        for key, item in prepared.items():
            encoded = (
                policy.describe(item)
                if mode is CaptureMode.METADATA
                else json.dumps(item, separators=(",", ":"), ensure_ascii=False)
            )
            out[f"{semconv.LF_TRACE_METADATA}.{key}"] = encoded
    return out


_current: contextvars.ContextVar[_Block | None] = contextvars.ContextVar(
    "appsdk_trace_attributes", default=None
)


@contextmanager
def trace_attributes(
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    trace_name: str | None = None,
) -> Iterator[None]:
    """Put trace-level attributes on every span started inside the block.

    Nested blocks add to the outer one (tags are merged, inner values win). The values are
    rendered when each span starts, under that span's policy: user and session ids become
    keyed pseudonyms when the policy says ``pseudonymize_user_ids``, and everything is
    redacted like any text, whether or not ``configure()`` ran before the block opened.

    Example:
        >>> with trace_attributes(user_id="u-42", tags=["beta"]):  # doctest: +SKIP
        ...     answer(question)
    """
    outer = _current.get()
    merged = dict(outer.given) if outer is not None else {}
    if user_id is not None:
        merged[semconv.USER_ID] = str(user_id)
    if session_id is not None:
        merged[semconv.SESSION_ID] = str(session_id)
    if trace_name is not None:
        merged[semconv.LF_TRACE_NAME] = str(trace_name)
    if tags:
        existing = tuple(merged.get(semconv.LF_TRACE_TAGS, ()))
        merged[semconv.LF_TRACE_TAGS] = existing + tuple(
            str(t) for t in tags if str(t) not in existing
        )
    if metadata:
        merged["metadata"] = {**merged.get("metadata", {}), **metadata}
    block = _Block(merged)
    token = _current.set(block)
    # Like langfuse's propagate_attributes: the span already open gets them too.
    current = trace_api.get_current_span()
    policy = span_policy.policy_of(current)
    if policy is not None and current.is_recording():
        span_policy.set_trusted(current, block.render(policy))
    try:
        yield
    finally:
        _current.reset(token)


def known_at_root() -> dict[str, Any]:
    """What the innermost block says of the trace, as given: for sampling rules at the root."""
    block = _current.get()
    if block is None:
        return {}
    given = block.given
    known: dict[str, Any] = {}
    for key, name in (
        (semconv.LF_TRACE_NAME, "trace_name"),
        (semconv.USER_ID, "user_id"),
        (semconv.SESSION_ID, "session_id"),
        (semconv.LF_TRACE_TAGS, "tags"),
    ):
        if key in given:
            known[name] = given[key]
    return known


def apply_trace_attributes(span: Span, policy: PolicyEngine) -> None:
    """Copy the block's attributes, rendered under ``policy``, onto a starting span."""
    block = _current.get()
    if block is not None:
        span_policy.set_trusted(span, block.render(policy))


def wrap_context(function: Callable[P, R]) -> Callable[P, R]:
    """Bind ``function`` to the current context, so the trace continues in another thread.

    Example:
        >>> executor.submit(wrap_context(fetch), url)  # doctest: +SKIP
    """
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(function, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose tasks run in the submitter's context (and so its trace)."""

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return super().submit(wrap_context(fn), *args, **kwargs)
