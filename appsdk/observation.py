"""The observation handle: one span, written through the policy, ended exactly once.

The decorator and the context managers are built on :class:`Observation`; they differ only in
when they start and end it. Every attribute goes through the policy before it touches the span.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from appsdk import semconv
from appsdk.policy import CaptureMode, ContentKind, PolicyEngine
from appsdk.serialization import count_render_error, safe_text
from appsdk.span_policy import bind, set_trusted
from appsdk.trace_context import bounded_name

__all__ = ["UNSET", "Observation"]

_log = logging.getLogger("appsdk")
_MESSAGE_MODES = (CaptureMode.FULL, CaptureMode.REDACTED)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an argument that was not given (``None`` is a value an output may have)."""


def _iso(value: datetime.datetime | float | int) -> str:
    # Langfuse drops the whole generation when completion_start_time is not an ISO string.
    if isinstance(value, int | float):
        value = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    elif value.tzinfo is None:
        value = value.astimezone(datetime.UTC)
    return value.isoformat()


def _usage(usage: Mapping[str, Any]) -> str | None:
    clean = {}
    for key, count in usage.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            _log.debug("appsdk: usage %r=%r is not a non-negative int; not recorded", key, count)
            continue
        clean[str(key)] = count
    return json.dumps(clean) if clean else None


def _cost(cost: Mapping[str, Any]) -> str | None:
    clean = {}
    for key, amount in cost.items():
        if isinstance(amount, Decimal):
            amount = float(amount)
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            _log.debug("appsdk: cost %r=%r is not a non-negative number; not recorded", key, amount)
            continue
        clean[str(key)] = amount
    return json.dumps(clean) if clean else None


def _metadata_value(policy: PolicyEngine, mode: CaptureMode, value: Any) -> str:
    if mode is CaptureMode.METADATA:
        return policy.describe(value)
    # Compact and unescaped, as langfuse encodes metadata values (JavaScript's JSON.stringify).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Observation:
    """A handle to one observation: ``update()`` it, then ``end()`` or ``fail()`` it once.

    As a context manager it is the current observation inside the ``with`` block, and an
    exception escaping the block marks it ERROR (and is re-raised).

    Example:
        >>> with appsdk.start_observation("retrieve", as_type="retriever") as obs:  # doctest: +SKIP
        ...     obs.update(output=documents)
    """

    __slots__ = ("_ended", "_policy", "_span", "_token", "as_type")

    def __init__(self, span: trace_api.Span, as_type: str, policy: PolicyEngine) -> None:
        self._span = span
        self._policy = policy
        self.as_type = as_type
        self._ended = False
        self._token: object | None = None
        bind(span, policy)

    @property
    def policy(self) -> PolicyEngine:
        """The policy this observation's content is recorded under (decided at its start)."""
        return self._policy

    def record(self, attributes: Mapping[str, Any]) -> None:
        """Write attributes already rendered through :attr:`policy` (not guarded twice)."""
        set_trusted(self._span, attributes)

    @property
    def span(self) -> trace_api.Span:
        """The underlying OpenTelemetry span."""
        return self._span

    @property
    def trace_id(self) -> str:
        return f"{self._span.get_span_context().trace_id:032x}"

    @property
    def id(self) -> str:
        return f"{self._span.get_span_context().span_id:016x}"

    def _content_kinds(self) -> tuple[ContentKind, ContentKind]:
        if self.as_type in semconv.GENERATION_LIKE_TYPES:
            return "messages", "completions"
        return "inputs", "outputs"

    def update(
        self,
        *,
        input: Any = UNSET,
        output: Any = UNSET,
        metadata: Any = None,
        level: str | None = None,
        status_message: str | None = None,
        model: str | None = None,
        usage: Mapping[str, int] | None = None,
        cost: Mapping[str, float | Decimal] | None = None,
        model_parameters: Mapping[str, Any] | None = None,
        completion_start_time: datetime.datetime | float | None = None,
        prompt: Any = None,
        version: str | None = None,
        name: str | None = None,
        usage_details: Mapping[str, int] | None = None,
        cost_details: Mapping[str, float | Decimal] | None = None,
    ) -> Observation:
        """Record more about this observation; content goes through the policy.

        Takes langfuse's names too (``usage_details``, ``cost_details``, ``version``, ``name``),
        so calls ported from ``update_current_span`` / ``update_current_generation`` work.
        Values of the wrong type (a negative token count, a level Langfuse does not know) are
        left out and logged at debug level rather than raised: tracing never breaks the caller.
        """
        span = self._span
        if not span.is_recording():
            return self
        usage = usage if usage is not None else usage_details
        cost = cost if cost is not None else cost_details
        # Names are the caller's values: cut (every span of a trace may carry them) and read
        # through safe_text (an object whose __str__ raises is not the caller's error here).
        if name is not None:
            span.update_name(bounded_name(safe_text(name)))
        if version is not None:
            span.set_attribute(semconv.LF_VERSION, bounded_name(safe_text(version)))
        policy = self._policy
        safe: dict[str, Any] = {}
        input_kind, output_kind = self._content_kinds()
        if input is not UNSET:
            rendered = policy.render(input_kind, input)
            if rendered is not None:
                safe[semconv.LF_INPUT] = rendered
        if output is not UNSET:
            rendered = policy.render(output_kind, output)
            if rendered is not None:
                safe[semconv.LF_OUTPUT] = rendered
        if metadata is not None:
            self._metadata(semconv.LF_METADATA, metadata, safe)
        if level is not None:
            if level in semconv.LEVELS:
                safe[semconv.LF_LEVEL] = level
            else:
                _log.debug("appsdk: level %r is not one of %s", level, sorted(semconv.LEVELS))
        if status_message is not None and policy.error_mode in _MESSAGE_MODES:
            safe[semconv.LF_STATUS_MESSAGE] = policy.error_message("", safe_text(status_message))
        if model_parameters:
            safe[semconv.LF_MODEL_PARAMETERS] = json.dumps(
                policy.prepare(dict(model_parameters), True)
            )
        if completion_start_time is not None:
            safe[semconv.LF_COMPLETION_START] = _iso(completion_start_time)
        if safe:
            set_trusted(span, safe)
        # Given by the caller and not rendered here: the egress guard scrubs these at the exit.
        if model is not None:
            span.set_attribute(semconv.LF_MODEL, bounded_name(safe_text(model)))
        if usage is not None and (encoded := _usage(usage)) is not None:
            span.set_attribute(semconv.LF_USAGE, encoded)
        if cost is not None and (encoded := _cost(cost)) is not None:
            span.set_attribute(semconv.LF_COST, encoded)
        if prompt is not None:
            self.link_prompt(prompt)
        return self

    def _metadata(self, prefix: str, metadata: Any, safe: dict[str, Any]) -> None:
        """Metadata as langfuse writes it: one attribute per key, or one for a non-dict value."""
        policy = self._policy
        mode = policy.metadata_mode
        if mode is CaptureMode.NONE:
            return
        redact = mode is CaptureMode.REDACTED
        if not isinstance(metadata, dict):
            prepared = policy.prepare(metadata, redact)
            safe[prefix] = _metadata_value(policy, mode, prepared)
            return
        for key, value in policy.prepare(metadata, redact).items():
            if value is None:  # as in langfuse: None does not overwrite an earlier value
                continue
            safe[f"{prefix}.{key}"] = _metadata_value(policy, mode, value)

    def link_prompt(self, prompt: Any) -> None:
        """Link a Langfuse prompt (name + int version) to this generation; never a fallback."""
        name = getattr(prompt, "name", None)
        version = getattr(prompt, "version", None)
        if getattr(prompt, "is_fallback", False):
            # A fallback is not a stored version: linking it would point at the wrong prompt.
            if name is not None:
                self._span.set_attribute(f"{semconv.LF_METADATA}.prompt_fallback", json.dumps(name))
            return
        if self.as_type not in semconv.GENERATION_LIKE_TYPES:
            return
        if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
            _log.debug("appsdk: prompt without a str name and an int version is not linked")
            return
        self._span.set_attributes(
            {semconv.LF_PROMPT_NAME: name, semconv.LF_PROMPT_VERSION: version}
        )

    def fail(self, error: BaseException) -> None:
        """End the observation as ERROR with the error's message as the policy allows.

        Never raises: an error whose ``__str__`` raises is recorded by its type, and the
        observation is ended (and stops being current) whatever happens while recording.
        """
        if self._ended:
            return
        try:
            span = self._span
            if span.is_recording():
                error_type = type(error).__qualname__
                message = self._policy.error_message(error_type, safe_text(error))
                self.record(
                    {
                        semconv.LF_LEVEL: "ERROR",
                        semconv.LF_STATUS_MESSAGE: message,
                        semconv.ERROR_TYPE: error_type,
                    }
                )
                span.set_status(Status(StatusCode.ERROR, message))
                span.add_event(
                    "exception", {"exception.type": error_type, "exception.message": message}
                )
        except Exception:
            count_render_error()
            _log.debug("appsdk: could not record the error of an observation", exc_info=True)
        finally:
            self.end()

    def end(self) -> None:
        """End the observation (once; later calls do nothing). Never raises."""
        if self._ended:
            return
        self._ended = True
        try:
            self._span.end()
        except Exception:
            _log.debug("appsdk: could not end an observation", exc_info=True)
        finally:
            self._detach()

    def _detach(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                context_api.detach(token)  # type: ignore[arg-type]
            except Exception:  # detaching in another context (a generator moved threads)
                _log.debug("appsdk: context detach failed", exc_info=True)

    def __enter__(self) -> Observation:
        self._token = context_api.attach(trace_api.set_span_in_context(self._span))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.fail(exc)
        else:
            self.end()
