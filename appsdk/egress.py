"""The egress guard: the policy applied to every exported span, whoever created it.

appsdk's own observations are written through the policy when they are recorded. Spans of
other code (langfuse's decorator, a raw OpenTelemetry span, another instrumentation) are not,
so before any exporter sees them this guard rewrites them: content keys get their kind's
capture mode, every other string attribute and the status message are scrubbed of secrets.
It runs in the span's ``on_end``, so unredacted content never waits in an export queue.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status

from appsdk import semconv
from appsdk.policy import CaptureMode, ContentKind, PolicyEngine

if TYPE_CHECKING:
    from appsdk.pipeline import Pipeline

__all__ = ["guard_span", "install", "kind_of_key"]

_INPUT_KEYS = frozenset({semconv.LF_INPUT, "input.value", "traceloop.entity.input"})
_OUTPUT_KEYS = frozenset({semconv.LF_OUTPUT, "output.value", "traceloop.entity.output"})
_KIND_BY_KEY: dict[str, ContentKind] = {
    semconv.GEN_AI_INPUT_MESSAGES: "messages",
    semconv.GEN_AI_SYSTEM_INSTRUCTIONS: "messages",
    semconv.GEN_AI_OUTPUT_MESSAGES: "completions",
}
_KIND_BY_PREFIX: tuple[tuple[str, ContentKind], ...] = (
    ("gen_ai.prompt", "messages"),
    ("gen_ai.completion", "completions"),
    ("llm.input_messages", "messages"),
    ("llm.output_messages", "completions"),
    (semconv.LF_METADATA, "metadata"),
    (semconv.LF_TRACE_METADATA, "metadata"),
)


@functools.lru_cache(maxsize=4096)
def kind_of_key(key: str, generation: bool) -> ContentKind | None:
    """Which kind of content an attribute key carries, or None if it is not content."""
    if key in _INPUT_KEYS:
        return "messages" if generation else "inputs"
    if key in _OUTPUT_KEYS:
        return "completions" if generation else "outputs"
    kind = _KIND_BY_KEY.get(key)
    if kind is not None:
        return kind
    for prefix, prefixed_kind in _KIND_BY_PREFIX:
        if key.startswith(prefix):
            return prefixed_kind
    return None


# Where infrastructure records where it connected: an IP address there is a server, not a
# person, so only secrets are removed from these (credentials in a URL, a token in a query).
_ADDRESS_KEYS = frozenset(
    {
        "url.full",
        "http.url",
        "server.address",
        "network.peer.address",
        "net.peer.name",
        "net.peer.ip",
        "net.host.name",
        "http.host",
        "http.target",
        "url.path",
        "url.query",
    }
)
_KEEP_ADDRESSES = frozenset({"IP_ADDRESS"})


def _guard_attributes(
    attributes: Any, policy: PolicyEngine, generation: bool
) -> dict[str, Any] | None:
    """The attributes made safe, or None when nothing had to change."""
    changed = False
    safe: dict[str, Any] = {}
    scrub_others = policy.metadata_mode is not CaptureMode.FULL
    redact = policy.redactor.redact_repeated
    for key, value in attributes.items():
        kind = kind_of_key(key, generation)
        new: Any
        if kind is not None:
            text = (
                value
                if isinstance(value, str)
                else json.dumps(list(value) if isinstance(value, tuple) else value)
            )
            new = policy.render_text(kind, text)
            if new is None:
                changed = True
                continue
        elif scrub_others and isinstance(value, str):
            new = redact(value, _KEEP_ADDRESSES) if key in _ADDRESS_KEYS else redact(value)
        elif scrub_others and isinstance(value, tuple) and value and isinstance(value[0], str):
            new = tuple(redact(item) for item in value)
        else:
            new = value
        changed = changed or new != value
        safe[key] = new
    return safe if changed else None


def guard_span(span: ReadableSpan, policy: PolicyEngine) -> ReadableSpan:
    """``span`` with the policy applied, or ``span`` itself if it was already safe."""
    scope = span.instrumentation_scope
    if scope is not None and scope.name == semconv.TRACER_NAME:
        return span  # written through the policy when it was recorded
    attributes = span.attributes or {}
    generation = attributes.get(semconv.LF_TYPE) in semconv.GENERATION_LIKE_TYPES
    new_attributes = _guard_attributes(attributes, policy, generation)
    events_changed = False
    events = []
    for event in span.events:
        guarded = _guard_attributes(event.attributes or {}, policy, generation)
        if guarded is not None:
            events_changed = True
            event = Event(event.name, guarded, event.timestamp)
        events.append(event)
    description = span.status.description
    safe_description = policy.redactor.redact(description) if description else description
    if new_attributes is None and not events_changed and safe_description == description:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=new_attributes if new_attributes is not None else attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, safe_description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=scope,
    )


def install(pipeline: Pipeline) -> None:
    """Make the guard the last step before ``pipeline``'s exporters."""
    policy = pipeline.engine

    def guard(span: ReadableSpan) -> ReadableSpan | None:
        return guard_span(span, policy)

    pipeline.end_hooks.append(guard)
