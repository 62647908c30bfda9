"""``@observe`` (a drop-in for ``langfuse.observe``) and the observation context managers.

Before ``configure()`` a decorated function runs as if undecorated. After it, a call costs one
span on appsdk's provider with its input and output written through the policy; nothing is
serialized twice and nothing is exported on the caller's thread.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import re
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from appsdk import pipeline as _pipeline
from appsdk import runtime as _runtime
from appsdk import semconv, span_policy
from appsdk.observation import UNSET, Observation
from appsdk.policy import ContentKind, Policy, PolicyEngine
from appsdk.prompts import active_prompt

__all__ = [
    "get_current_observation_id",
    "get_current_trace_id",
    "observe",
    "start_observation",
    "update_current_observation",
]

F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger("appsdk")
_NOOP_POLICY = Policy.none().engine


# What marks an observation ERROR, as in langfuse: an exit (SystemExit, KeyboardInterrupt,
# GeneratorExit) only ends it.
def _is_failure(error: BaseException) -> bool:
    """An error the observation records: any Exception, and asyncio's cancellation (langfuse
    records it too). SystemExit, KeyboardInterrupt and GeneratorExit end it without one."""
    # By type(): isinstance() would ask the object's __class__, which is the application's code.
    kind = type(error)
    if issubclass(kind, Exception):
        return True
    # Only a process running asyncio can be cancelled by it: asyncio is not imported for this.
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and issubclass(kind, asyncio.CancelledError)


_SPECIAL_KWARGS = ("langfuse_trace_id", "langfuse_parent_observation_id", "langfuse_public_key")


def _parent_context(trace_id: str, parent_id: str | None) -> context_api.Context:
    """A context whose parent is the given ids, read as langfuse 5 reads them.

    An id that is not lowercase hex of the right length is logged and still read as
    ``int(id, 16)``: ``"ABAB..."`` or ``"abc"`` (zero-padded) names a trace; one OpenTelemetry
    finds invalid (zeros, more than 128 or 64 bits, negative) gives the observation a new trace.

    Raises:
        ValueError: ``int(id, 16)`` cannot read an id (as langfuse raises, before the call).
        TypeError: an id is not a string.
    """
    if not re.match(r"^[0-9a-f]{32}$", trace_id):
        _log.warning(
            "appsdk: langfuse_trace_id %r is not 32 lowercase hex characters "
            "(e.g. from appsdk.get_current_trace_id()); read as hex as langfuse does",
            trace_id,
        )
    if parent_id and not re.match(r"^[0-9a-f]{16}$", parent_id):
        _log.warning(
            "appsdk: langfuse_parent_observation_id %r is not 16 lowercase hex characters "
            "(e.g. from appsdk.get_current_observation_id()); read as hex as langfuse does",
            parent_id,
        )
    parent = trace_api.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(parent_id, 16) if parent_id else RandomIdGenerator().generate_span_id(),
        is_remote=False,
        trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED),
    )
    return trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))


def _start(
    pipeline: _pipeline.Pipeline,
    name: str,
    as_type: str,
    explicit: PolicyEngine | None,
    *,
    input: Any = UNSET,
    context: context_api.Context | None = None,
    as_root: bool = False,
) -> Observation:
    policy = span_policy.resolve(context, explicit, pipeline.engine)
    attributes: dict[str, Any] = {semconv.LF_TYPE: as_type}
    if input is not UNSET:
        kind: ContentKind = "messages" if as_type in semconv.GENERATION_LIKE_TYPES else "inputs"
        rendered = policy.render(kind, input)
        if rendered is not None:
            attributes[semconv.LF_INPUT] = rendered
    if as_root:
        attributes["langfuse.internal.as_root"] = True
    span = pipeline.tracer.start_span(name, context=context, attributes=attributes)
    try:
        span_policy.trust(span, attributes)
        observation = Observation(span, as_type, policy)
        if as_type in semconv.GENERATION_LIKE_TYPES:
            prompt = active_prompt()
            if prompt is not None:
                observation.link_prompt(prompt)
    except BaseException:
        span.end()  # a span started is ended, whatever failed after
        raise
    return observation


def _valid_type(as_type: str | None) -> str:
    if as_type is None:
        return "span"
    if as_type not in semconv.OBSERVATION_TYPES or as_type == "event":
        _log.warning("appsdk: invalid as_type %r; using 'span'", as_type)
        return "span"
    return as_type


def _is_method(func: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "self" in parameters or "cls" in parameters


@overload
def observe(func: F) -> F: ...


@overload
def observe(
    func: None = None,
    *,
    name: str | None = None,
    as_type: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    transform_to_string: Callable[[Iterable[Any]], str] | None = None,
    policy: Policy | None = None,
) -> Callable[[F], F]: ...


def observe(
    func: F | None = None,
    *,
    name: str | None = None,
    as_type: str | None = None,
    capture_input: bool | None = None,
    capture_output: bool | None = None,
    transform_to_string: Callable[[Iterable[Any]], str] | None = None,
    policy: Policy | None = None,
) -> F | Callable[[F], F]:
    """Trace a function as an observation: the same contract as ``langfuse.observe``.

    Works on sync and async functions, generators and async generators (traced until
    exhausted or closed) and methods (``self``/``cls`` are not recorded). Input is recorded as
    ``{"args": [...], "kwargs": {...}}`` and output as the return value, both under the
    policy (``policy=`` overrides the configured one for this function). An exception marks
    the observation ERROR with its message and is re-raised. The keyword arguments
    ``langfuse_trace_id`` and ``langfuse_parent_observation_id`` set the parent.

    Example:
        >>> @observe(as_type="retriever")
        ... def search(query: str) -> list[str]: ...
    """
    observation_type = _valid_type(as_type)
    # langfuse's switch, read when decorating as langfuse reads it; an explicit argument wins.
    io_default = _io_capture_default()

    def decorate(function: F) -> F:
        settings = _Options(
            name or getattr(function, "__name__", None) or type(function).__name__,
            observation_type,
            capture_input if capture_input is not None else io_default,
            capture_output if capture_output is not None else io_default,
            transform_to_string,
            policy,
            _is_method(function),
        )
        if inspect.iscoroutinefunction(function):
            return _async_wrapper(function, settings)  # type: ignore[return-value]
        # Generator and async generator functions return their iterator at once: the sync
        # wrapper hands it to a traced iterator that ends the observation when it is done.
        return _sync_wrapper(function, settings)  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _io_capture_default() -> bool:
    """The ``observe_io_capture`` setting (``LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED``)
    as langfuse reads it: the variable as it is when the function is decorated, else the
    setting in force. Never raises: a malformed value is ``configure()``'s to name (it fails
    on it); meanwhile capture stays on, as langfuse does for any value but false or 0."""
    from appsdk.config import environment_settings, settings_in_force
    from appsdk.errors import ConfigError

    try:
        now = environment_settings("observe_io_capture")
        if "observe_io_capture" in now.model_fields_set:
            return now.observe_io_capture
    except ConfigError:
        _log.debug("appsdk: LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED", exc_info=True)
    try:
        return settings_in_force("observe_io_capture").observe_io_capture
    except ConfigError:
        return True


class _Options:
    __slots__ = (
        "capture_input",
        "capture_output",
        "is_method",
        "name",
        "policy",
        "transform",
        "type",
    )

    def __init__(
        self,
        name: str,
        obs_type: str,
        capture_input: bool,
        capture_output: bool,
        transform: Callable[[Iterable[Any]], str] | None,
        policy: Policy | None,
        is_method: bool,
    ) -> None:
        self.name = name
        self.type = obs_type
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.transform = transform
        self.policy = policy.engine if policy is not None else None
        self.is_method = is_method


def _begin(options: _Options, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Observation | None:
    """Pop the special kwargs; start the observation, or None when tracing is off."""
    trace_id = kwargs.pop("langfuse_trace_id", None)
    parent_id = kwargs.pop("langfuse_parent_observation_id", None)
    public_key = kwargs.pop("langfuse_public_key", None)
    pipeline = _runtime.current()
    if pipeline is None:
        return None
    if public_key is not None and public_key != pipeline.settings.langfuse_public_key:
        # Another project's key: as langfuse does, this call is not traced (never mixed in).
        _log.warning("appsdk: langfuse_public_key is not the configured project's; not traced")
        return None
    # A malformed id is the caller's mistake: it raises, as in langfuse, before the call.
    context = _parent_context(trace_id, parent_id) if trace_id else None
    try:
        input: Any = UNSET
        if options.capture_input:
            input = {"args": args[1:] if options.is_method else args, "kwargs": kwargs}
        # As langfuse 5 does: an explicit trace id makes this observation the trace's root.
        as_root = context is not None
        observation = _start(
            pipeline,
            options.name,
            options.type,
            options.policy,
            input=input,
            context=context,
            as_root=as_root,
        )
        observation.__enter__()
        return observation
    except Exception:  # the tracing path never raises into user code
        _log.debug("appsdk: could not start observation %s", options.name, exc_info=True)
        return None


def _finish(observation: Observation, options: _Options, result: Any) -> Any:
    """Record the result, or hand the observation to a generator wrapper that ends it later.

    What the result is, is read from its type: ``isinstance`` and ``hasattr`` would run the
    application's ``__class__`` / ``__getattr__``, and nothing here may raise into the call.
    """
    kind = type(result)
    if issubclass(kind, types.GeneratorType):
        return _TracedGenerator(result, observation, options)
    if issubclass(kind, types.AsyncGeneratorType):
        return _TracedAsyncGenerator(result, observation, options)
    if kind.__name__ == "StreamingResponse" and _streams_body(result):
        # Starlette streams the body after the handler returned: trace it until it is sent.
        result.body_iterator = _TracedAsyncGenerator(result.body_iterator, observation, options)
        return result
    try:
        # None is no output (as in langfuse): it must not overwrite one set by an update call.
        if options.capture_output and result is not None:
            observation.update(output=result)
    except Exception:
        _log.debug("appsdk: could not record output of %s", options.name, exc_info=True)
    observation.end()
    return result


def _streams_body(response: Any) -> bool:
    try:
        return hasattr(response, "body_iterator")
    except Exception:
        return False


def _end_with(observation: Observation, error: BaseException) -> None:
    """End ``observation`` as the call that raised ``error`` ended: failed, or exited."""
    if _is_failure(error):
        observation.fail(error)
    else:
        observation.end()


def _sync_wrapper(function: Callable[..., Any], options: _Options) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        observation = _begin(options, args, kwargs)
        if observation is None:
            return function(*args, **kwargs)
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            _end_with(observation, error)
            raise
        return _finish(observation, options, result)

    return wrapper


def _async_wrapper(function: Callable[..., Any], options: _Options) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        observation = _begin(options, args, kwargs)
        if observation is None:
            return await function(*args, **kwargs)
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            _end_with(observation, error)
            raise
        return _finish(observation, options, result)

    return wrapper


def _joined(items: list[Any], transform: Callable[[Iterable[Any]], str] | None) -> Any:
    if transform is not None:
        return transform(items)
    if all(isinstance(item, str) for item in items):
        return "".join(items)
    return items


class _TracedSteps:
    """What both traced iterators share: the preserved context, the items, the ending."""

    # Returned unconsumed from another decorated function, it is recorded as what it stands
    # for, never by its internals (langfuse records its wrapper's attributes, client included).
    recorded_as = "<generator>"

    def __init__(self, generator: Any, observation: Observation, options: _Options) -> None:
        self._generator = generator
        self._observation = observation
        self._options = options
        self._items: list[Any] = []
        self._chars = 0
        self._only_text = True
        self._not_kept = 0
        # Keep only what the recorded output can hold (a long stream would otherwise hold
        # every item until it ends); a transform sees every item, as the caller asked.
        self._keeping = options.capture_output
        self._bounded = options.transform is None
        # Each step runs in the context the observation was current in, wherever it is pulled.
        self._context = contextvars.copy_context()
        observation._detach()

    def _keep(self, item: Any) -> Any:
        if self._keeping:
            self._items.append(item)
            if self._bounded:
                self._stop_keeping_when_full(item)
        elif self._options.capture_output:
            self._not_kept += 1
        return item

    def _stop_keeping_when_full(self, item: Any) -> None:
        policy = self._observation.policy
        if type(item) is str:
            self._chars += len(item)
        else:
            self._only_text = False
        if self._only_text:
            self._keeping = self._chars <= policy.max_chars
        else:
            self._keeping = len(self._items) <= policy.max_items

    def _done(self) -> None:
        try:
            if self._options.capture_output:
                output = _joined(self._items, self._options.transform)
                kept = self._not_kept
                metadata = {"output_items_not_recorded": kept} if kept else None
                self._observation.update(output=output, metadata=metadata)
        except Exception:  # the application's transform_to_string raised: not the caller's
            _log.debug("appsdk: could not record output of %s", self._options.name, exc_info=True)
        finally:
            self._observation.end()

    def _end_by(self, error: BaseException) -> None:
        """The iteration stopped: exhausted or exited (ended), or failed (marked ERROR)."""
        if issubclass(type(error), StopIteration | StopAsyncIteration) or not _is_failure(error):
            self._done()
        else:
            self._observation.fail(error)

    def __del__(self) -> None:
        if not self._observation._ended:
            self._done()


class _TracedGenerator(_TracedSteps, Iterator[Any]):
    """A generator traced until it is exhausted, closed, or collected."""

    def __iter__(self) -> _TracedGenerator:
        return self

    def __next__(self) -> Any:
        try:
            item = self._context.run(next, self._generator)
        except BaseException as error:
            self._end_by(error)
            raise
        return self._keep(item)

    def close(self) -> None:
        close = getattr(self._generator, "close", None)
        try:
            if close is not None:
                self._context.run(close)
        except BaseException as error:
            self._end_by(error)
            raise
        self._done()


def _asyncio() -> Any:
    # Awaited only inside a running event loop, where asyncio is already imported.
    import asyncio

    return asyncio


class _TracedAsyncGenerator(_TracedSteps, AsyncIterator[Any]):
    """The async twin of :class:`_TracedGenerator`."""

    def __aiter__(self) -> _TracedAsyncGenerator:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await _asyncio().create_task(self._generator.__anext__(), context=self._context)
        except BaseException as error:
            self._end_by(error)
            raise
        return self._keep(item)

    async def aclose(self) -> None:
        try:
            await _asyncio().create_task(self._generator.aclose(), context=self._context)
        except BaseException as error:
            self._end_by(error)
            raise
        self._done()


def start_observation(
    name: str,
    *,
    as_type: str = "span",
    input: Any = UNSET,
    metadata: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    **attributes: Any,
) -> Observation:
    """Start an observation; use it as a context manager, or call ``end()`` / ``fail()``.

    Keyword arguments beyond ``input`` and ``metadata`` are those of
    :meth:`Observation.update` (model, usage, cost, prompt, ...).

    Example:
        >>> with start_observation("llm", as_type="generation", model="m") as gen:  # doctest: +SKIP
        ...     gen.update(output=text, usage={"input": 12, "output": 40})
    """
    obs_type = _valid_type(as_type)
    pipeline = _runtime.current()
    if pipeline is None:
        return Observation(trace_api.INVALID_SPAN, obs_type, _NOOP_POLICY)
    explicit = policy.engine if policy is not None else None
    try:
        observation = _start(pipeline, name, obs_type, explicit, input=input)
        if metadata or attributes:
            observation.update(metadata=metadata, **attributes)
    except TypeError:
        raise
    except Exception:
        _log.debug("appsdk: could not start observation %s", name, exc_info=True)
        return Observation(trace_api.INVALID_SPAN, obs_type, _NOOP_POLICY)
    return observation


def _current_observation() -> Observation | None:
    span = trace_api.get_current_span()
    if not span.is_recording():
        return None
    policy = span_policy.policy_of(span)
    if policy is None:
        pipeline = _runtime.current()
        policy = pipeline.engine if pipeline is not None else _NOOP_POLICY
    attributes = getattr(span, "attributes", None) or {}
    return Observation(span, str(attributes.get(semconv.LF_TYPE, "span")), policy)


def update_current_observation(**fields: Any) -> None:
    """Update the current observation (see :meth:`Observation.update` for the fields)."""
    observation = _current_observation()
    if observation is not None:
        observation.update(**fields)


def get_current_trace_id() -> str | None:
    """The current trace id as 32 lowercase hex characters, or None outside a trace."""
    ctx = trace_api.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def get_current_observation_id() -> str | None:
    """The current observation (span) id as 16 lowercase hex characters, or None."""
    ctx = trace_api.get_current_span().get_span_context()
    return f"{ctx.span_id:016x}" if ctx.is_valid else None
