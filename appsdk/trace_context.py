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

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span

from appsdk import pipeline as _pipeline
from appsdk import semconv

__all__ = ["ContextThreadPoolExecutor", "trace_attributes", "wrap_context"]

P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
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

    Nested blocks add to the outer one (tags are merged, inner values win). User ids are
    recorded as keyed pseudonyms when the policy says ``pseudonymize_user_ids``.

    Example:
        >>> with trace_attributes(user_id="u-42", tags=["beta"]):  # doctest: +SKIP
        ...     answer(question)
    """
    outer = _current.get() or {}
    merged = dict(outer)
    pipeline = _pipeline.current()
    policy = pipeline.policy if pipeline is not None else None
    if user_id is not None:
        merged[semconv.USER_ID] = (
            f"user-{policy.keyed_hash(user_id)}"
            if policy is not None and policy.pseudonymize_user_ids
            else user_id
        )
    if session_id is not None:
        merged[semconv.SESSION_ID] = session_id
    if trace_name is not None:
        merged[semconv.LF_TRACE_NAME] = trace_name
    if tags:
        existing = tuple(merged.get(semconv.LF_TRACE_TAGS, ()))
        merged[semconv.LF_TRACE_TAGS] = existing + tuple(t for t in tags if t not in existing)
    if metadata:
        if policy is not None and policy.metadata.value == "none":
            metadata = {}
        prepared = policy.prepare(dict(metadata)) if policy is not None else dict(metadata)
        for key, value in prepared.items():
            merged[f"{semconv.LF_TRACE_METADATA}.{key}"] = json.dumps(value)
    token = _current.set(merged)
    try:
        yield
    finally:
        _current.reset(token)


def apply_trace_attributes(span: Span, parent_context: Context | None) -> None:
    """The pipeline's span-start hook: copy the block's attributes onto the new span."""
    attributes = _current.get()
    if attributes:
        span.set_attributes(attributes)


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
