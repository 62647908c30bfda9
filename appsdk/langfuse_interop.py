"""Living with the langfuse SDK: what its span processor would do, done on appsdk's path, the
spans that go to Langfuse, and the langfuse client (prompts, scores) on appsdk's provider.

appsdk keeps langfuse's ``LangfuseSpanProcessor`` off its provider (it would export every span
twice and cost each one tens of microseconds), so the two things that processor contributes at
span start are done here instead, with the same rules:

- the attributes of ``langfuse.propagate_attributes(...)`` (user, session, tags, metadata,
  version, trace name), read from the context by langfuse's own function, so that users who
  call it get the same trace;
- ``langfuse.internal.is_app_root`` on the top-most span this process exports to Langfuse (no
  local parent that is exported too), which Langfuse's events table counts as a root even when
  the trace arrived with a remote parent.

Which spans Langfuse receives follows langfuse's own filter (:func:`langfuse_span_filter`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import get_current_span

from appsdk import semconv

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.pipeline import Pipeline

__all__ = [
    "IS_APP_ROOT",
    "attach_langfuse_client",
    "is_langfuse_processor",
    "langfuse_filter_for",
    "langfuse_span_filter",
    "make_langfuse_client",
    "mark_app_root",
    "propagated_attributes",
]

_log = logging.getLogger("appsdk")
SpanFilter = Callable[[ReadableSpan], bool]
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


def is_langfuse_processor(processor: SpanProcessor) -> bool:
    """Whether ``processor`` is langfuse's own span processor (matched by name: not imported)."""
    return type(processor).__name__ == "LangfuseSpanProcessor"


def langfuse_span_filter(span: ReadableSpan) -> bool:
    """Which spans go to Langfuse: appsdk's and langfuse's own, GenAI spans, HTTP client spans."""
    scope = span.instrumentation_scope
    name = scope.name if scope is not None else ""
    if name in (semconv.TRACER_NAME, "langfuse-sdk") or name.startswith(
        ("opentelemetry.instrumentation.httpx", "appsdk")
    ):
        return True
    return any(key.startswith(("gen_ai.", "langfuse.")) for key in (span.attributes or {}))


def langfuse_filter_for(provider: TracerProvider, settings: Settings) -> SpanFilter:
    """Langfuse's filter, minus what a langfuse processor already on the provider exports."""
    active = getattr(provider, "_active_span_processor", None)
    for processor in getattr(active, "_span_processors", ()):
        if is_langfuse_processor(processor) and (
            getattr(processor, "public_key", None) == settings.langfuse_public_key
        ):
            theirs: SpanFilter = getattr(processor, "_should_export_span", langfuse_span_filter)
            _log.warning(
                "appsdk: a langfuse client created before appsdk.configure() exports some spans "
                "itself; appsdk leaves those to it. Call appsdk.configure() first to avoid its "
                "per-span cost."
            )
            return lambda span: langfuse_span_filter(span) and not theirs(span)
    return langfuse_span_filter


def make_langfuse_client(pipeline: Pipeline) -> Any:
    """The langfuse client (prompts, scores, its @observe) on appsdk's provider, or None."""
    settings = pipeline.settings
    try:
        from langfuse import Langfuse

        assert settings.langfuse_secret_key is not None
        return Langfuse(
            public_key=settings.langfuse_public_key,
            secret_key=settings.langfuse_secret_key.get_secret_value(),
            base_url=settings.langfuse_url,
            environment=settings.environment,
            release=settings.release,
            tracer_provider=pipeline.provider,
        )
    except Exception as exc:  # prompts and scores degrade; tracing goes on
        _log.warning("appsdk: could not create the langfuse client: %s", type(exc).__name__)
        return None


def attach_langfuse_client(pipeline: Pipeline) -> None:
    """Make the langfuse client now if the application uses langfuse, else on first use.

    An application that imported langfuse calls ``langfuse.get_client()``, which must find
    appsdk's client (with the configured keys); one that did not is spared the import.
    """
    if pipeline.settings.langfuse_enabled and "langfuse" in sys.modules:
        _ = pipeline.langfuse_client
