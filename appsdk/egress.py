"""The egress guard: the one point where the policy is enforced on every span that leaves.

Every span passes here in the pipeline's ``on_end``, before any sink (each exporter, the local
store, the spool), whoever created it and whatever API wrote to it after it started. The span
is judged by the policy bound to it at start (see :mod:`appsdk.span_policy`). Values appsdk
itself rendered through that policy are recognised by identity and not paid for twice;
everything else is rewritten: content keys get their kind's capture mode, other strings,
attribute keys, span and event names are scrubbed of secrets, user and session ids follow the
identity rule, and error messages keep only what the error rule allows.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status, StatusCode

from appsdk import semconv
from appsdk.policy import SECRET_PLACEHOLDER, CaptureMode, ContentKind, PolicyEngine
from appsdk.redaction import is_secret_key
from appsdk.span_policy import policy_of, trusted_of

__all__ = ["guard_span", "kind_of_key"]

_INPUT_KEYS = frozenset(
    {semconv.LF_INPUT, semconv.LF_TRACE_INPUT, "input.value", "traceloop.entity.input"}
)
_OUTPUT_KEYS = frozenset(
    {semconv.LF_OUTPUT, semconv.LF_TRACE_OUTPUT, "output.value", "traceloop.entity.output"}
)
_KIND_BY_KEY: dict[str, ContentKind] = {
    semconv.GEN_AI_INPUT_MESSAGES: "messages",
    semconv.GEN_AI_SYSTEM_INSTRUCTIONS: "messages",
    semconv.GEN_AI_OUTPUT_MESSAGES: "completions",
    semconv.GEN_AI_TOOL_DEFINITIONS: "messages",
}
_KIND_BY_PREFIX: tuple[tuple[str, ContentKind], ...] = (
    ("gen_ai.prompt", "messages"),
    ("gen_ai.completion", "completions"),
    ("llm.input_messages", "messages"),
    ("llm.output_messages", "completions"),
    (semconv.LF_METADATA, "metadata"),
    (semconv.LF_TRACE_METADATA, "metadata"),
)
# User and session ids: pseudonymized when the policy says so, else redacted like any text.
_IDENTITY_KEYS = {
    semconv.USER_ID: "user",
    "langfuse.user.id": "user",
    "enduser.id": "user",
    semconv.SESSION_ID: "session",
    "langfuse.session.id": "session",
    "gen_ai.conversation.id": "session",
}
# Keys whose value is an error's message: they follow the policy's error rule.
_MESSAGE_KEYS = frozenset({semconv.LF_STATUS_MESSAGE, "exception.message"})
_STACKTRACE_KEY = "exception.stacktrace"
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
_NOTHING: Mapping[str, Any] = {}


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


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


class _Guard:
    """The policy applied to one span's attributes, events and status."""

    __slots__ = ("error_type", "generation", "policy", "scrub")

    def __init__(self, policy: PolicyEngine, generation: bool) -> None:
        self.policy = policy
        self.generation = generation
        # Under ``full`` metadata the application asked for attributes as given.
        self.scrub = policy.metadata_mode is not CaptureMode.FULL
        self.error_type = "error"

    def text(self, value: str) -> str:
        return self.policy.redactor.redact_repeated(value) if self.scrub else value

    def key(self, key: str) -> str:
        return self.policy.redactor.redact_repeated(key) if self.scrub else key

    def value(self, key: str, value: Any) -> Any:
        """The safe value for ``key``, or None to leave the attribute out."""
        policy = self.policy
        kind = kind_of_key(key, self.generation)
        if kind is not None:
            if kind == "metadata" and self.scrub and is_secret_key(key, policy.secret_keys):
                return json.dumps(SECRET_PLACEHOLDER)
            return policy.render_text(kind, _as_text(value))
        if isinstance(value, str):
            if key in _MESSAGE_KEYS:
                return policy.error_message(self.error_type, value)
            if key == _STACKTRACE_KEY:
                return self._stacktrace(value)
            prefix = _IDENTITY_KEYS.get(key)
            if prefix is not None:
                return policy.identity(value, prefix)
            if not self.scrub:
                return value
            if is_secret_key(key, policy.secret_keys):
                return SECRET_PLACEHOLDER
            if key in _ADDRESS_KEYS:
                return policy.redactor.redact_repeated(value, _KEEP_ADDRESSES)
            return policy.redactor.redact_repeated(value)
        if self.scrub and isinstance(value, tuple) and value and isinstance(value[0], str):
            return tuple(policy.redactor.redact_repeated(item) for item in value)
        return value

    def _stacktrace(self, value: str) -> str | None:
        mode = self.policy.error_mode
        if mode is CaptureMode.FULL:
            return value
        if mode is CaptureMode.REDACTED:
            return self.policy.redactor.redact(value)
        return None  # its last line is the message

    def attributes(
        self, attributes: Mapping[str, Any], trusted: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The attributes made safe, or None when nothing had to change."""
        changed = False
        safe: dict[str, Any] = {}
        for key, value in attributes.items():
            if trusted.get(key) is value:
                safe[key] = value
                continue
            if key == semconv.LF_TYPE and key in trusted:
                # The observation type is decided at start, as in langfuse: a later
                # update_current_generation() on a span does not turn it into a generation.
                safe[key] = trusted[key]
                changed = True
                continue
            new = self.value(key, value)
            safe_key = self.key(key)
            if new is None:
                changed = True
                continue
            changed = changed or safe_key != key or (new is not value and new != value)
            safe[safe_key] = new
        return safe if changed else None


def _contents(span: ReadableSpan) -> tuple[Mapping[str, Any], bool, bool]:
    """The span's attributes, and whether it has events and links.

    Read from the SDK's own containers when they are there: its public properties copy on every
    read (a mapping proxy iterated in Python, a tuple of each list), a cost every span paid.
    """
    attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
    events = getattr(getattr(span, "_events", None), "_dq", None)
    links = getattr(getattr(span, "_links", None), "_dq", None)
    if type(attributes) is not dict or events is None or links is None:
        return span.attributes or _NOTHING, bool(span.events), bool(span.links)
    return attributes, bool(events), bool(links)


def _error_type(span: ReadableSpan, attributes: Mapping[str, Any]) -> str:
    error_type = attributes.get(semconv.ERROR_TYPE)
    if isinstance(error_type, str):
        return error_type
    for event in reversed(span.events):
        found = (event.attributes or _NOTHING).get("exception.type")
        if isinstance(found, str):
            return found
    return "error"


def guard_span(
    span: ReadableSpan, default: PolicyEngine, live: object | None = None
) -> ReadableSpan:
    """``span`` with its policy applied, or ``span`` itself if it was already safe.

    Args:
        default: the policy of spans whose start appsdk did not see.
        live: the SDK span ``span`` was copied from, which carries its policy and the values
            written through it (see :mod:`appsdk.span_policy`).
    """
    source = live if live is not None else span
    policy = policy_of(source) or default
    attributes, has_events, has_links = _contents(span)
    trusted = trusted_of(source) or _NOTHING
    status = span.status
    if (
        not has_events
        and not has_links
        and status.description is None
        and all(trusted.get(key) is value for key, value in attributes.items())
        and policy.redactor.redact_repeated(span.name) == span.name
    ):
        return span  # the common case: everything on it was written through its policy
    guard = _Guard(policy, attributes.get(semconv.LF_TYPE) in semconv.GENERATION_LIKE_TYPES)
    if status.status_code is StatusCode.ERROR or has_events:
        guard.error_type = _error_type(span, attributes)
    new_attributes = guard.attributes(attributes, trusted)
    name = guard.text(span.name)
    events, events_changed = _guard_events(span, guard) if has_events else ([], False)
    links, links_changed = _guard_links(span, guard) if has_links else ([], False)
    description = status.description
    if description:
        description = policy.error_message(guard.error_type, description)
    if (
        new_attributes is None
        and not events_changed
        and not links_changed
        and name == span.name
        and description == status.description
    ):
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=new_attributes if new_attributes is not None else attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=Status(status.status_code, description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _guard_events(span: ReadableSpan, guard: _Guard) -> tuple[list[Event], bool]:
    changed = False
    events = []
    for event in span.events:
        attributes = guard.attributes(event.attributes or _NOTHING, _NOTHING)
        name = guard.text(event.name)
        if attributes is not None or name != event.name:
            changed = True
            event = Event(
                name, event.attributes if attributes is None else attributes, event.timestamp
            )
        events.append(event)
    return events, changed


def _guard_links(span: ReadableSpan, guard: _Guard) -> tuple[list[Link], bool]:
    changed = False
    links = []
    for link in span.links:
        attributes = guard.attributes(link.attributes or _NOTHING, _NOTHING)
        if attributes is not None:
            changed = True
            link = Link(link.context, attributes)
        links.append(link)
    return links, changed
