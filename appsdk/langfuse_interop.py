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

import importlib.abc
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
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
    """Make the langfuse client now if the application uses langfuse, else when it imports it.

    An application that imported langfuse calls ``langfuse.get_client()``, which must find
    appsdk's client (with the configured keys, given as arguments or not) rather than make one
    of its own from the environment (no keys: a no-op client whose scores are lost). One that
    has not imported it yet is spared the import: the client is made right after its import.
    """
    if not pipeline.settings.langfuse_enabled:
        return
    if "langfuse" in sys.modules:
        _ = pipeline.langfuse_client
    else:
        _watch_for_langfuse()


class _LangfuseImportWatcher(importlib.abc.MetaPathFinder):
    """On ``sys.meta_path`` until langfuse is imported: that import then makes the client of
    the pipeline configured at the time (before any ``get_client()`` can run)."""

    def __init__(self) -> None:
        self._finding = False  # the import lock of "langfuse" serializes find_spec calls

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "langfuse" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)  # the finders after this one
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _ThenAttach(spec.loader)
        return spec


class _ThenAttach(importlib.abc.Loader):
    """langfuse's own loader, then the client: nothing else changes in the import."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader  # as the import would have set them
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _langfuse_imported()

    def __getattr__(self, name: str) -> Any:  # resource readers and the like
        return getattr(self.loader, name)


_watcher_lock = threading.Lock()
_watcher: _LangfuseImportWatcher | None = None


def _watch_for_langfuse() -> None:
    global _watcher
    with _watcher_lock:
        if _watcher is None:
            _watcher = _LangfuseImportWatcher()
            sys.meta_path.insert(0, _watcher)


def _langfuse_imported() -> None:
    """langfuse has just been imported: the configured pipeline's client, made now."""
    global _watcher
    with _watcher_lock:
        if _watcher is not None:
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not _watcher]
            _watcher = None
    try:
        from appsdk import runtime  # lazily: the layer above, loaded by configure()

        pipeline = runtime.current()
        if pipeline is not None and pipeline.settings.langfuse_enabled:
            _make_client_without_waiting(pipeline)
    except Exception:  # an import of the application's must never fail because of appsdk
        _log.debug("appsdk: could not attach the langfuse client", exc_info=True)


def _make_client_without_waiting(pipeline: Pipeline) -> None:
    """``pipeline.langfuse_client``, without waiting for its lock: this runs inside the import
    of langfuse, which whoever holds that lock may be waiting for (``make_langfuse_client``
    imports langfuse). Then a client is made all the same, not kept: langfuse keeps one set of
    resources per public key, which ``get_client()`` finds as soon as this import returns."""
    lock = pipeline._langfuse_lock
    if not lock.acquire(blocking=False):
        make_langfuse_client(pipeline)
        return
    try:
        if pipeline._langfuse_client is None:
            pipeline._langfuse_client = make_langfuse_client(pipeline)
    finally:
        lock.release()
