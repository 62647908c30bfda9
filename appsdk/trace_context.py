"""Trace-level attributes for every span started in a block, context across threads, and
the bounds on what enters a trace's context from outside.

``trace_attributes`` follows Langfuse's ``propagate_attributes`` contract: user, session, tags,
metadata and trace name land on every span started inside the block, whoever starts it
(appsdk, langfuse's own decorator, HTTP instrumentation), so any of them can carry the trace's
attributes to Langfuse. Those names are cut to :data:`NAME_LIMIT` as they are given: every
span of the trace carries them.

A ``tracestate`` that arrives with an incoming ``traceparent`` is input like any other: the
span that continues it inherits it only through :func:`guard_trace_state` (bounded, members
holding a secret dropped), so what reaches the exporters and the next hop's headers is bounded
and clean.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple, ParamSpec, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Span
from opentelemetry.trace.span import TraceState

from appsdk import semconv, span_policy
from appsdk.policy import CaptureMode, PolicyEngine

__all__ = [
    "NAME_LIMIT",
    "TAG_LIMIT",
    "TRACE_STATE_MAX_CHARS",
    "TRACE_STATE_MAX_MEMBERS",
    "ContextThreadPoolExecutor",
    "GuardedState",
    "GuardedTraceState",
    "bounded_name",
    "guard_trace_state",
    "known_at_root",
    "trace_attributes",
    "wrap_context",
]

P = ParamSpec("P")
R = TypeVar("R")

NAME_LIMIT = 200
"""Most characters kept of a user id, session id, tag, trace name or metadata key.

Langfuse shows these in its tables, filters and user/session pages, where a longer one is
never read whole, and its own SDK refuses propagated values over 200 characters. Every span of
a trace carries them: cut here, a 1 MB id costs what a 200-character one does, on every span
and before any redaction or pseudonymization works on it."""
TAG_LIMIT = 50
"""Most tags kept per trace; the rest are counted in one ``[truncated N tags]`` tag."""
# A secret (a key, an address, a token) is rarely longer than this: when the cut falls inside
# a word that began within it, the whole word goes, so no half-secret the redactor can no
# longer recognise is kept (the policy scrubs before it cuts for the same reason).
_WORD = 64
_WORD_BREAK = re.compile(r"[^\w@.%+\-/=:~!$&*#?]")
_TAGS_DROPPED = "appsdk.tags_dropped"  # in a block's given values only, never on a span

TRACE_STATE_MAX_CHARS = 512
"""Longest ``tracestate`` a span inherits from a remote parent (and so forwards): W3C Trace
Context asks vendors to propagate at least 512 characters; appsdk propagates no more."""
TRACE_STATE_MAX_MEMBERS = 32
"""Most ``tracestate`` list-members inherited (W3C's limit)."""
# W3C Trace Context, "tracestate limits": when cutting, entries longer than 128 characters
# are removed first, then entries from the end.
_LONG_MEMBER = 128


def bounded_name(text: str) -> str:
    """``text`` cut to :data:`NAME_LIMIT` characters, marked as the policy marks a cut value
    (``...[truncated N chars]``); as given when it fits.

    Example:
        >>> bounded_name("u" * 1000)[195:]
        'uuuuu...[truncated 800 chars]'
    """
    if len(text) <= NAME_LIMIT:
        return text
    cut = NAME_LIMIT
    if not _WORD_BREAK.match(text, cut):
        # The cut splits a word: one that began lately is dropped whole.
        start = max(cut - _WORD, 0)
        breaks = [found.start() for found in _WORD_BREAK.finditer(text, start, cut)]
        if breaks:
            cut = breaks[-1]
    return f"{text[:cut]}...[truncated {len(text) - cut} chars]"


class GuardedTraceState(TraceState):
    """A trace state that passed :func:`guard_trace_state`; spans that inherit it (every
    local child) need no second pass."""


class GuardedState(NamedTuple):
    """What :func:`guard_trace_state` kept, and how many members it dropped and why."""

    state: GuardedTraceState
    over_bounds: int
    secrets: int


def guard_trace_state(state: TraceState, redact: Callable[[str], str]) -> GuardedState:
    """``state`` bounded and clean, as a span may inherit and forward it.

    At most :data:`TRACE_STATE_MAX_MEMBERS` members and :data:`TRACE_STATE_MAX_CHARS`
    characters as a header (cut as W3C says: long members first, then from the end); then
    every member (``key=value``) that ``redact`` changes is dropped whole: a tracestate value
    cannot hold a ``[REDACTED:...]`` marker, and a vendor's state with a secret in it is no
    state to forward. The bound comes first, so a hostile header costs one short scan.
    """
    members = [(key, value, f"{key}={value}") for key, value in state.items()]
    over = max(len(members) - TRACE_STATE_MAX_MEMBERS, 0)
    del members[TRACE_STATE_MAX_MEMBERS:]
    size = sum(len(text) for _, _, text in members) + len(members) - 1
    while members and size > TRACE_STATE_MAX_CHARS:
        long = [i for i, (_, _, text) in enumerate(members) if len(text) > _LONG_MEMBER]
        _, _, text = members.pop(long[-1] if long else -1)
        size -= len(text) + 1
        over += 1
    kept = [(key, value) for key, value, text in members if redact(text) == text]
    return GuardedState(GuardedTraceState(kept), over, len(members) - len(kept))


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
            dropped = given.get(_TAGS_DROPPED)
            if dropped:
                out[key] = (*out[key], f"[truncated {dropped} tags]")
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

    Each id, the trace name, each tag and each metadata key is cut to :data:`NAME_LIMIT`
    characters (marked ``...[truncated N chars]``), and tags to :data:`TAG_LIMIT`, as given:
    sampling rules see the cut values too, as Langfuse shows them.

    Example:
        >>> with trace_attributes(user_id="u-42", tags=["beta"]):  # doctest: +SKIP
        ...     answer(question)
    """
    outer = _current.get()
    merged = dict(outer.given) if outer is not None else {}
    # Cut as given, before anything else reads them (rendering, sampling rules): NAME_LIMIT.
    if user_id is not None:
        merged[semconv.USER_ID] = bounded_name(str(user_id))
    if session_id is not None:
        merged[semconv.SESSION_ID] = bounded_name(str(session_id))
    if trace_name is not None:
        merged[semconv.LF_TRACE_NAME] = bounded_name(str(trace_name))
    if tags:
        _merge_tags(merged, tags)
    if metadata:
        bounded = {
            bounded_name(key) if isinstance(key, str) else key: value
            for key, value in metadata.items()
        }
        merged["metadata"] = {**merged.get("metadata", {}), **bounded}
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


def _merge_tags(merged: dict[str, Any], tags: Iterable[Any]) -> None:
    """Add ``tags`` (each cut to NAME_LIMIT, no duplicates) to ``merged``'s, up to TAG_LIMIT;
    the rest are only counted."""
    existing: tuple[str, ...] = merged.get(semconv.LF_TRACE_TAGS, ())
    kept = list(existing)
    seen = set(existing)
    dropped: int = merged.get(_TAGS_DROPPED, 0)
    remaining = iter(tags)
    for tag in remaining:
        if len(kept) >= TAG_LIMIT:
            dropped += 1 + sum(1 for _ in remaining)
            break
        text = bounded_name(str(tag))
        if text not in seen:
            seen.add(text)
            kept.append(text)
    merged[semconv.LF_TRACE_TAGS] = tuple(kept)
    if dropped:
        merged[_TAGS_DROPPED] = dropped


def known_at_root() -> dict[str, Any]:
    """What the innermost block says of the trace, as given (cut to NAME_LIMIT, so a rule
    sees what Langfuse shows): for sampling rules at the root."""
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
