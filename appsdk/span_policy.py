"""Which policy governs a span: decided once when it starts, carried on the span itself.

The policy in force for a span is the one given explicitly (``observe(policy=...)``,
``start_observation(policy=...)``, a client's ``policy=``), else the one of its local parent
span, else the configured one. It is stored on the SDK span object, so whatever writes to the
span later (the OpenTelemetry API, the langfuse client, another instrumentation) is judged by
the same policy at the exit.

Values appsdk already rendered through that policy are recorded as *trusted* by identity: the
egress guard skips exactly those objects, so content is never redacted twice, while any other
value written under the same key is guarded like a stranger's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context

from appsdk.policy import PolicyEngine

__all__ = ["bind", "inherited", "policy_of", "resolve", "set_trusted", "trust", "trusted_of"]

_POLICY = "_appsdk_policy"
_TRUSTED = "_appsdk_trusted"


def policy_of(span: object) -> PolicyEngine | None:
    """The policy bound to ``span``, or None for a span appsdk has not seen start."""
    return getattr(span, _POLICY, None)


def inherited(context: Context | None) -> PolicyEngine | None:
    """The policy of the span current in ``context`` (the parent of a span started there)."""
    return getattr(trace_api.get_current_span(context), _POLICY, None)


def resolve(
    context: Context | None, explicit: PolicyEngine | None, default: PolicyEngine
) -> PolicyEngine:
    """Explicit policy, else the parent span's, else ``default``."""
    if explicit is not None:
        return explicit
    parent = getattr(trace_api.get_current_span(context), _POLICY, None)
    return parent if parent is not None else default


def bind(span: trace_api.Span, engine: PolicyEngine) -> None:
    """Make ``engine`` the policy of ``span`` (a no-op for non-recording spans)."""
    # Never on a non-recording span: INVALID_SPAN is one shared object, the parent of every
    # root, and a policy bound to it would be inherited by every span of the process.
    if span.is_recording():
        setattr(span, _POLICY, engine)


def set_trusted(span: trace_api.Span, attributes: Mapping[str, Any]) -> None:
    """Write ``attributes`` (already rendered through the span's policy) and trust them."""
    # One set_attribute per key: set_attributes validates the mapping itself first, through
    # abstract-class checks that cost more than the few strings written here.
    for key, value in attributes.items():
        span.set_attribute(key, value)
    trust(span, attributes)


def trust(span: trace_api.Span, attributes: Mapping[str, Any]) -> None:
    """Record ``attributes`` as written through the span's policy (e.g. given at start)."""
    trusted = getattr(span, _TRUSTED, None)
    if trusted is not None:
        trusted.update(attributes)
    elif span.is_recording():
        setattr(span, _TRUSTED, dict(attributes))


def trusted_of(span: object) -> Mapping[str, Any] | None:
    """The attribute values appsdk wrote through the policy, by key (compare by identity)."""
    return getattr(span, _TRUSTED, None)
