"""The process's tracing runtime: ``configure()``, ``current()``, ``flush()``, ``shutdown()``.

``configure()`` builds a :class:`~appsdk.pipeline.Pipeline` from the settings (one batch
exporter per backend, the spool, the local store) and installs it: appsdk's provider becomes
the global OpenTelemetry TracerProvider (or, if the application installed its own SDK provider
first, appsdk's slot rides on that one). Before that, :func:`preflight` checks what the
settings name (files, folders, keys; ``appsdk doctor`` runs it too); after it, threading is
instrumented so hand-offs to threads keep the trace. Re-configuring swaps what the slot
points at; the provider itself lives as long as the process. Process exit, SIGTERM and
forked workers are wired through :mod:`appsdk.lifecycle`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from appsdk import lifecycle
from appsdk.batching import BatchExportProcessor, start_untraced
from appsdk.errors import ConfigError, StoreError
from appsdk.langfuse_interop import attach_langfuse_client, langfuse_filter_for
from appsdk.pipeline import Pipeline, feedback_client_module
from appsdk.policy import Policy
from appsdk.provider import AppTracerProvider, DelegatingSampler, PipelineSlot
from appsdk.spool import Spool

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.sampling import Sampling
    from appsdk.spool import Destination

__all__ = ["Preflight", "configure", "current", "flush", "preflight", "shutdown", "stats"]

_log = logging.getLogger("appsdk")

_state_lock = threading.Lock()
_slot = PipelineSlot()
_sampler = DelegatingSampler()
_provider: TracerProvider | None = None
_retired: Pipeline | None = None
_threads_instrumented = False  # by appsdk, in this process

P = ParamSpec("P")
T = TypeVar("T")


def current() -> Pipeline | None:
    """The installed pipeline, or None before ``configure()``."""
    return _slot.pipeline


def _install_provider(settings: Settings) -> TracerProvider:
    global _provider
    if _provider is not None:
        running = _provider.resource.attributes.get("service.name")
        if settings.service_name and settings.service_name != running:
            # OpenTelemetry sets a process's provider, and so its resource, once.
            _log.warning(
                "appsdk: service_name %r does not apply: this process already traces as %r "
                "(the OpenTelemetry resource is set once per process; restart to change it). "
                "Every other setting of this configure() call applies.",
                settings.service_name,
                running,
            )
        return _provider
    existing = trace_api.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # The application owns the provider: ride along on it.
        existing.add_span_processor(_slot)
        _provider = existing
        return existing
    resource_attrs: dict[str, Any] = {}
    if settings.service_name:
        resource_attrs["service.name"] = settings.service_name
    provider = AppTracerProvider(Resource.create(resource_attrs), _slot, _sampler)
    trace_api.set_tracer_provider(provider)
    _provider = provider
    return provider


def _open_spool(
    settings: Settings, processors: dict[Destination, BatchExportProcessor]
) -> Spool | None:
    """The spool, when an exporter is spooled; its evictions are counted by the processor of
    their destination (``processors``, filled as the exporters are made)."""
    if not any(spec.spooled for spec in settings.exporters):
        return None

    def count_eviction(destination: Destination | None, spans: int) -> None:
        processor = processors.get(destination) if destination is not None else None
        if processor is not None:
            processor.evicted(spans)

    try:
        return Spool(
            settings.spool_path,
            max_bytes=settings.spool_max_bytes,
            max_age_s=settings.spool_max_age_s,
            on_evict=count_eviction,
        )
    except StoreError as exc:
        _log.warning("appsdk: no spool (%s); spans a backend cannot take are dropped", exc)
        return None


def _build(
    settings: Settings, provider: TracerProvider, policy: Policy, sampling: Sampling | None
) -> Pipeline:
    # Imported here: httpx and the store are not needed until a pipeline is built.
    from appsdk.otlp import exporter_for
    from appsdk.store.exporter import LocalStoreExporter

    pipeline = Pipeline(settings, provider, policy, sampling)
    spooled: dict[Destination, BatchExportProcessor] = {}
    spool = _open_spool(settings, spooled)
    pipeline.spool = spool
    for spec in settings.exporters:
        exporter = (
            LocalStoreExporter(settings.store_path)
            if spec.kind == "local"
            else exporter_for(spec, settings.export_timeout_s)
        )
        processor = BatchExportProcessor(
            exporter,
            name=spec.name,
            spool=spool if spec.spooled else None,
            spool_key=spec.destination,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay_s=settings.schedule_delay_ms / 1000,
        )
        if spec.spooled and spec.destination is not None:
            spooled[spec.destination] = processor
        accept = langfuse_filter_for(provider, settings) if spec.spans == "langfuse" else None
        pipeline.add_exporter(processor, accept)
    return pipeline


@dataclasses.dataclass(frozen=True, slots=True)
class Preflight:
    """What :func:`preflight` found: each failed setting's error, and what it loaded."""

    problems: dict[str, ConfigError]
    """Setting -> its error, in the order checked; empty when every check passed."""
    sampling: Sampling | None = None
    """The ``sampling`` setting's rules, parsed (None when unset or not asked for)."""


def preflight(settings: Settings, *, load_sampling: bool = True) -> Preflight:
    """Check what the settings in use name: ``configure()`` raises the first problem,
    ``appsdk doctor`` reports each one, with the same message.

    The price table is loaded (once: :meth:`PriceTable.in_force` returns it under these
    settings) and the sampling rules parsed; the prompt folder, when set and read (no
    Langfuse), exists; the folders of the local store, the spool and the feedback outbox,
    when in use, can be created and written; every feedback signing key is long enough.
    No network: a few stats and one small write per folder.
    """
    problems: dict[str, ConfigError] = {}

    def check(field: str, run: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return run(*args, **kwargs)
        except ConfigError as exc:
            problems[field] = exc
            return None

    if settings.prices is not None:
        from appsdk.pricing import PriceTable  # pydantic models: built only when used

        check("prices", PriceTable.load_for, settings)
    if "prompts_dir" in settings.model_fields_set and not settings.langfuse_enabled:
        check("prompts_dir", _check_prompts_dir, settings.prompts_dir)
    if settings.feedback_secret is not None:
        check("feedback_secret", _check_feedback_keys, settings.feedback_keys)
    written: dict[Path, str | None] = {}  # one write per folder, however many files it holds
    for field, path, fix in _databases_in_use(settings):
        check(field, _check_database, field, path, fix, written)
    sampling = None
    if load_sampling and settings.sampling:
        from appsdk.sampling import Sampling  # pydantic models: built only when used

        sampling = check("sampling", Sampling.parse, settings.sampling)
    return Preflight(problems, sampling)


_WRITABLE_FOLDER = "point it at a file in a folder this process can write"


def _databases_in_use(settings: Settings) -> list[tuple[str, Path, str]]:
    """The SQLite files these settings will write: (setting, path, fix)."""
    found = []
    if settings.tracing_enabled and settings.local_store_enabled:
        fix = f"{_WRITABLE_FOLDER}, or set APPSDK_LOCAL_STORE=never to keep no local traces"
        found.append(("store_path", settings.store_path, fix))
    if settings.tracing_enabled and any(spec.spooled for spec in settings.exporters):
        fix = f"{_WRITABLE_FOLDER}, or set APPSDK_SPOOL=false to drop what a backend cannot take"
        found.append(("spool_path", settings.spool_path, fix))
    if settings.langfuse_enabled:  # the outbox is read at configure(), and feedback waits there
        found.append(("feedback_outbox", settings.feedback_outbox, _WRITABLE_FOLDER))
    return found


_VARIABLE = {
    "store_path": "APPSDK_STORE_PATH / store_path",
    "spool_path": "APPSDK_SPOOL_PATH / spool_path",
    "feedback_outbox": "APPSDK_FEEDBACK_OUTBOX / feedback_outbox",
}


def _check_database(field: str, path: Path, fix: str, written: dict[Path, str | None]) -> None:
    """Raise ConfigError if the database at ``path`` could not be created: its folder is
    created if missing (0700, as :mod:`appsdk.sqlite` makes it) and a file is created and
    removed in it. The database itself is left to :mod:`appsdk.sqlite`, which makes it 0600.
    """
    if path.is_dir():
        from appsdk.config import Settings

        example = path.absolute() / Path(Settings.model_fields[field].default).name
        raise ConfigError(
            _VARIABLE[field],
            f"{path.absolute()} is a folder, not a file",
            f"give the path of a file, e.g. {example}",
        )
    folder = path.absolute().parent
    if folder not in written:
        written[folder] = _write_problem(folder)
    problem = written[folder]
    if problem is not None:
        raise ConfigError(_VARIABLE[field], problem, fix)


def _write_problem(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (created if missing), or None."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        return f"cannot create the folder {folder}: a file of that name is in the way"
    except OSError as exc:
        return f"cannot create the folder {folder} ({exc.strerror or type(exc).__name__})"
    # Named like a database: a process tightening this folder meanwhile (appsdk.sqlite keeps a
    # folder of databases private) still takes it for appsdk's own.
    probe = folder / f".appsdk-write-check-{os.getpid()}-{os.urandom(4).hex()}.db"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(probe, flags, 0o600))
    except OSError as exc:
        return f"cannot write in the folder {folder} ({exc.strerror or type(exc).__name__})"
    with contextlib.suppress(OSError):
        probe.unlink()
    return None


def _check_prompts_dir(folder: Path) -> None:
    if not folder.is_dir():
        where = folder.absolute()
        raise ConfigError(
            "APPSDK_PROMPTS_DIR / prompts_dir",
            f"{where} is not a folder" if where.exists() else f"{where} does not exist",
            "point it at the folder of your prompt files (<name>.json), or unset it "
            "to read ./prompts",
        )


def _check_feedback_keys(keys: list[str]) -> None:
    from appsdk.config import FEEDBACK_KEY_MIN_CHARS as least

    short = [str(number) for number, key in enumerate(keys, start=1) if len(key) < least]
    if keys and not short:
        return
    raise ConfigError(
        "APPSDK_FEEDBACK_SECRET / feedback_secret",
        f"{'key' if len(short) == 1 else 'keys'} {', '.join(short)} of {len(keys)} "
        f"{'is' if len(short) == 1 else 'are'} shorter than {least} characters "
        "(keys are never shown)"
        if keys
        else "holds no key, only commas",
        f"use random keys of at least {least} characters, comma-separated, newest last "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
    )


def _instrument_threads(wanted: bool) -> None:
    """Executor and thread hand-offs keep the trace: OpenTelemetry's threading instrumentation
    (``threading.Thread``, ``threading.Timer``, ``ThreadPoolExecutor.submit``, and so
    ``loop.run_in_executor``), installed once per process; removed only if appsdk put it."""
    global _threads_instrumented
    if wanted == _threads_instrumented:
        return
    # Imported here, not with appsdk (wrapt and the instrumentation base: tens of ms).
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    instrumentor = ThreadingInstrumentor()  # one per process (BaseInstrumentor's singleton)
    if not wanted:
        instrumentor.uninstrument()
        _threads_instrumented = False
    elif not instrumentor.is_instrumented_by_opentelemetry:  # the app may have done it
        instrumentor.instrument(skip_dep_check=True)  # it instruments the standard library
        _threads_instrumented = True


def configure(
    *, policy: Policy | None = None, sampling: Sampling | None = None, **options: Any
) -> Pipeline:
    """Install appsdk's tracing pipeline and return it.

    Args:
        policy: what content is recorded; default :meth:`Policy.from_settings` of these
            settings (``capture=`` / ``APPSDK_CAPTURE``; redacted).
        options: any field of :class:`appsdk.Settings`, e.g. ``langfuse_base_url=``,
            ``otlp_endpoints=``, ``store_path=``; arguments win over environment variables.

    Threads started and executor tasks submitted from then on continue the submitter's
    trace (``instrument_threads``; docs/index.md, "Threads and executors").

    Raises:
        ConfigError: an option or environment variable is invalid, or a file, folder or key
            it names cannot be used (:func:`preflight`).
    """
    from appsdk.config import load_settings

    settings = load_settings(**options)
    checked = preflight(settings, load_sampling=sampling is None)
    if checked.problems:  # the first; `appsdk doctor` lists them all
        raise next(iter(checked.problems.values()))
    sampling = sampling if sampling is not None else checked.sampling
    policy = policy if policy is not None else Policy.from_settings(settings)

    if not settings.tracing_enabled:
        # As langfuse's LANGFUSE_TRACING_ENABLED=false: decorated code runs untraced.
        _log.info("appsdk: tracing is disabled (LANGFUSE_TRACING_ENABLED=false)")
        shutdown()
        return Pipeline(settings, trace_api.get_tracer_provider(), policy)  # type: ignore[arg-type]
    with _state_lock:
        provider = _install_provider(settings)
        pipeline = _build(settings, provider, policy, sampling)
        previous, _slot.pipeline = _slot.pipeline, pipeline
        _sampler.target = pipeline.sampler
        lifecycle.install(stop=_shutdown_at_exit, flush=_flush_at_signal)
        _instrument_threads(settings.instrument_threads)
    if previous is not None:
        previous.shutdown()
    attach_langfuse_client(pipeline)
    if settings.langfuse_enabled:
        # Off the caller's thread: checking the outbox loads the feedback client (httpx).
        start_untraced(threading.Thread(target=_resume_feedback, name="appsdk-resume", daemon=True))
    from appsdk.metrics_export import install_when_used

    install_when_used(settings)
    return pipeline


def _resume_feedback() -> None:
    """Ratings a previous process left in the outbox are delivered without a new submission."""
    try:
        from appsdk.feedback.client import start_default_if_pending

        start_default_if_pending()
    except Exception:  # tracing works on whatever the outbox's state
        _log.debug("appsdk: could not resume pending feedback", exc_info=True)


def _flush_at_signal() -> None:
    pipeline = _slot.pipeline
    if pipeline is not None:
        pipeline.flush(pipeline.settings.shutdown_timeout_s)


def _shutdown_at_exit() -> None:
    pipeline = _slot.pipeline
    if pipeline is not None:
        pipeline.shutdown(end_open=True)


def flush(timeout_s: float = 5.0) -> bool:
    """Export every span ended so far and deliver pending feedback, within ``timeout_s``.

    Returns:
        True only when every span it waited for reached every destination (sent, or written
        to the local store) and no rating is pending. False at the deadline, while batches
        wait in the spool (a backend down), when spans were rejected or could not be kept
        since the last flush, or while ratings wait in the outbox. Spans dropped by sampling
        or at a full queue are not waited for (``stats()`` counts the latter).
    """
    deadline = time.monotonic() + timeout_s
    pipeline = _slot.pipeline
    done = pipeline.flush(timeout_s) if pipeline is not None else True
    feedback = feedback_client_module()
    if feedback is not None:
        done = feedback.flush_default(max(0.0, deadline - time.monotonic())) and done
    return done


def shutdown(timeout_s: float | None = None) -> None:
    """Flush and stop the pipeline within ``timeout_s``; tracing becomes a no-op."""
    global _retired
    with _state_lock:
        pipeline, _slot.pipeline = _slot.pipeline, None
        _retired = pipeline or _retired
    if pipeline is not None:
        pipeline.shutdown(timeout_s, end_open=True)


def stats() -> dict[str, dict[str, int]]:
    """Per exporter: spans exported, export failures, and spans dropped (queue full, shutdown);
    ``recorder``: values that could not be rendered (recorded as placeholders); ``incoming``:
    members of incoming tracestates dropped (over their bounds, or holding a secret);
    ``sampling``; ``feedback``, once a rating was submitted or resumed: ratings submitted,
    delivered, pending and rejected for the configured destination (Langfuse, else the local
    store). docs/reliability.md says what each counter means.

    After ``shutdown()`` this still reports the pipeline that was shut down.
    """
    pipeline = _slot.pipeline or _retired
    if pipeline is None:
        return {}
    counts = pipeline.stats()
    feedback = feedback_client_module()
    ratings = feedback.stats_default(pipeline) if feedback is not None else None
    if ratings is not None:
        counts["feedback"] = ratings
    return counts
