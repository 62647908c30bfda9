"""What Langfuse's own span processor adds to a span when it starts, done on appsdk's path.

appsdk keeps langfuse's ``LangfuseSpanProcessor`` off its provider (it would export every span
twice and cost each one tens of microseconds), so the two things that processor contributes at
span start are done here instead, with the same rules:

- the attributes of ``langfuse.propagate_attributes(...)`` (user, session, tags, metadata,
  version, trace name), read from the context by langfuse's own function, so that users who
  call it get the same trace;
- ``langfuse.internal.is_app_root`` on the top-most span this process exports to Langfuse (no
  local parent that is exported too), which Langfuse's events table counts as a root even when
  the trace arrived with a remote parent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.trace import get_current_span

__all__ = ["IS_APP_ROOT", "mark_app_root", "propagated_attributes"]

IS_APP_ROOT = "langfuse.internal.is_app_root"
_EXPORTED = "_appsdk_langfuse_exported"
_TRACE_ID_BAGGAGE_KEY = "langfuse_trace_id"  # langfuse's claim that an upstream owns the root
# Instrumentation spans langfuse never marks as a root when they have a parent.
_INELIGIBLE = frozenset({("litellm", "raw_gen_ai_request")})
_PROPAGATION_MODULE = "langfuse._client.propagation"


def propagated_attributes(parent_context: Context | None) -> dict[str, Any]:
    """The attributes ``langfuse.propagate_attributes`` put in the context, else nothing.

    Only when langfuse was imported, and only when the context holds anything of it: a
    process that never calls langfuse pays one dictionary lookup.
    """
    module = sys.modules.get(_PROPAGATION_MODULE)
    if module is None:
        return {}
    context = parent_context if parent_context is not None else get_current()
    if not any(isinstance(key, str) and "langfuse" in key for key in context) and not (
        baggage.get_all(context)
    ):
        return {}
    read: Callable[[Context], dict[str, Any]] | None = getattr(
        module, "_get_propagated_attributes_from_context", None
    )
    if read is None:  # a langfuse version that moved it: nothing propagated, nothing broken
        return {}
    return read(context)


def mark_app_root(
    span: Span, parent_context: Context | None, exported: Callable[[ReadableSpan], bool]
) -> bool:
    """Set ``is_app_root`` as langfuse's processor would; True if this span got it.

    Args:
        exported: whether the Langfuse exporter takes a span, judged at its start.
    """
    expected = exported(span)
    setattr(span, _EXPORTED, expected)  # read by the children of this span
    if not expected:
        return False
    parent = get_current_span(parent_context)
    if getattr(parent, _EXPORTED, False):
        return False
    if span.parent is not None:
        scope = span.instrumentation_scope
        if scope is not None and (scope.name, span.name) in _INELIGIBLE:
            return False
    claimed = baggage.get_baggage(_TRACE_ID_BAGGAGE_KEY, parent_context)
    if claimed is not None and str(claimed).lower() == f"{span.context.trace_id:032x}":
        return False
    span.set_attribute(IS_APP_ROOT, True)
    return True
