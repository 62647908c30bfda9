"""Sampling to a budget that keeps what matters: rules at the root, retention for the rest.

The head decision is made once, at a trace's root, from what is known there (trace name,
user, session, tags, service, the model of a generation root): the first matching rule's
ratio, else the default ratio. It is deterministic in the trace id, exactly as OpenTelemetry's
``TraceIdRatioBased`` (so a gateway sampling ``parentbased_traceidratio`` at the same ratio
agrees), and travels in traceparent's sampled flag, so the gateway and vLLM follow it. A span
continuing an incoming traceparent (a remote parent) is a root of this service too: the rules
decide for it, whatever the caller's flag says, unless ``parent="trust"``.

A trace the head decision drops is still recorded (``RECORD_ONLY``: the caller pays the same
as for a sampled one) into a bounded retention buffer, and exported after all when, within
the window, one of its observations ends with an error, a span is slower than the latency
threshold, or a feedback score the rules call negative arrives for it. Promoted spans carry
``appsdk.sampling.kept`` (why) and a ``kept:<why>`` trace tag.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.span import SpanContext, TraceState
from opentelemetry.util.types import Attributes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appsdk import semconv
from appsdk.errors import ConfigError

__all__ = [
    "DECISION_ATTRIBUTE",
    "KEPT_ATTRIBUTE",
    "FeedbackRule",
    "Retention",
    "RuleSampler",
    "Sampling",
    "SamplingRule",
]

KEPT_ATTRIBUTE = "appsdk.sampling.kept"
"""Set on every span of a trace kept after the head decision dropped it: why it was kept."""
DECISION_ATTRIBUTE = "appsdk.sampling.decision"
"""With ``head="mark"``: the rules' decision (``keep`` / ``drop``) on each root, for a
Collector's tail sampling to act on (everything is sampled at the head then)."""
_TRACE_ID_LIMIT = (1 << 64) - 1
KeptReason = Literal["error", "slow", "feedback"]


class SamplingRule(BaseModel):
    """One rule: the traces it matches (every given field must match) and their ratio.

    Names are matched whole, or as a regular expression written ``/.../``.

    Example:
        >>> SamplingRule(user_id="vip-42", ratio=1.0)  # doctest: +SKIP
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ratio: float = Field(ge=0.0, le=1.0)
    trace_name: str | None = None
    """The trace name (``trace_attributes(trace_name=...)``), else the root span's name; a
    web route is a root span name too."""
    user_id: str | None = None
    session_id: str | None = None
    tag: str | None = None
    service: str | None = None
    model: str | None = None
    """The requested model, when the root is a generation (an llm-d client call)."""

    def matches(self, known: Mapping[str, Any]) -> bool:
        for name in ("trace_name", "user_id", "session_id", "service", "model"):
            wanted = getattr(self, name)
            if wanted is not None and not _match(wanted, known.get(name)):
                return False
        if self.tag is not None:
            return any(_match(self.tag, tag) for tag in known.get("tags", ()))
        return True


def _match(wanted: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if len(wanted) > 1 and wanted.startswith("/") and wanted.endswith("/"):
        return re.fullmatch(wanted[1:-1], value) is not None
    return wanted == value


_RULE = re.compile(r"^\s*([\w.-]+)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")


@dataclass(frozen=True)
class FeedbackRule:
    """A score that makes a trace worth keeping: ``"helpful == 0"``, ``"rating <= 2"``."""

    name: str
    op: str
    value: float | str | bool

    @classmethod
    def parse(cls, text: str) -> FeedbackRule:
        """Raises ValueError naming what is wrong with ``text``."""
        found = _RULE.match(text)
        if found is None:
            raise ValueError(f"{text!r} is not 'name op value', e.g. 'helpful == 0'")
        name, op, raw = found.groups()
        value: float | str | bool
        lowered = raw.lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw.strip("'\"")
        if isinstance(value, str | bool) and op not in ("==", "!="):
            raise ValueError(f"{text!r}: {op} compares numbers only")
        return cls(name, op, value)

    def negative(self, name: str, value: Any) -> bool:
        if name != self.name:
            return False
        if isinstance(value, bool):
            value = float(value) if not isinstance(self.value, bool) else value
        if isinstance(self.value, bool) and not isinstance(value, bool):
            value = bool(value) if isinstance(value, int | float) else value
        try:
            return bool(_OPS[self.op](value, self.value))
        except TypeError:
            return False


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}


class Sampling(BaseModel):
    """What to keep: a default ratio, ordered rules, and what promotes a dropped trace.

    From code (``appsdk.configure(sampling=Sampling(...))``), or from ``APPSDK_SAMPLING``: a
    JSON object, or the path of a JSON file holding one.

    Example:
        >>> Sampling(default_ratio=0.1, rules=[SamplingRule(user_id="vip", ratio=1.0)],
        ...          negative_feedback=["helpful == 0", "rating <= 2"])  # doctest: +SKIP
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    rules: tuple[SamplingRule, ...] = ()
    window_s: float = Field(default=600.0, gt=0, le=86_400)
    """How long a dropped trace waits for a reason to be kept."""
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Memory the retention buffer may hold; the oldest traces are evicted (counted) beyond."""
    latency_threshold_s: float | None = Field(default=None, gt=0)
    """A span slower than this keeps its trace."""
    keep_errors: bool = True
    head: Literal["apply", "mark"] = "apply"
    """``apply``: the rules decide at the head (the gateway and vLLM follow). ``mark``: every
    trace is sampled, and the roots carry ``appsdk.sampling.decision`` for a Collector's tail
    sampling to decide on (docs/sampling.md), so downstream spans of kept traces are kept."""
    negative_feedback: tuple[str, ...] = ()
    """Scores that keep their trace, e.g. ``"helpful == 0"``, ``"rating <= 2"``."""
    parent: Literal["rules", "trust"] = "rules"
    """A span whose parent came from an incoming ``traceparent`` (a remote parent): ``rules``
    decide for it as for a root, the caller's sampled flag ignored (a caller can neither
    export what the rules drop nor keep its requests out of every sink); ``trust``: it
    follows the caller's flag. Local parents are always followed."""

    @field_validator("negative_feedback")
    @classmethod
    def _rules_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rule in value:
            FeedbackRule.parse(rule)
        return value

    @classmethod
    def parse(cls, raw: str | None) -> Sampling | None:
        """``APPSDK_SAMPLING``'s value (JSON, or a JSON file's path); None when it is unset.

        Raises:
            ConfigError: the value is not valid JSON, names no readable file, or does not
                describe a valid sampling configuration.
        """
        raw = (raw or "").strip()
        if not raw:
            return None
        text = raw
        if not raw.startswith("{"):
            try:
                text = Path(raw).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    "APPSDK_SAMPLING",
                    f"names a file that cannot be read ({type(exc).__name__})",
                    "give a JSON object, or the path of a JSON file holding one",
                ) from None
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "is not JSON"
            raise ConfigError(
                "APPSDK_SAMPLING",
                str(problem),
                'give e.g. {"default_ratio": 0.1, "rules": [{"user_id": "vip", "ratio": 1}]} '
                "(see docs/sampling.md)",
            ) from None

    def ratio_for(self, known: Mapping[str, Any]) -> float:
        for rule in self.rules:
            if rule.matches(known):
                return rule.ratio
        return self.default_ratio


def keeps(ratio: float, trace_id: int) -> bool:
    """The head decision, as OpenTelemetry's ``TraceIdRatioBased`` makes it."""
    return (trace_id & _TRACE_ID_LIMIT) < round(ratio * (_TRACE_ID_LIMIT + 1))


class RuleSampler(otel_sampling.Sampler):
    """Root spans, and spans of a remote parent unless ``parent="trust"``: the rules' ratio,
    deterministic in the trace id. Children: the parent's decision, and a child of a dropped
    trace is still recorded (for retention).

    Args:
        known_at_root: what is known of the trace when its root starts (trace name, user,
            session, tags), read from the context.
    """

    def __init__(
        self,
        config: Sampling,
        *,
        service: str | None,
        known_at_root: Callable[[Context | None], dict[str, Any]],
    ) -> None:
        self.config = config
        self._service = service
        self._known_at_root = known_at_root
        self.counts = _Counts()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> otel_sampling.SamplingResult:
        parent = trace_api.get_current_span(parent_context).get_span_context()
        # The parent's trace state goes on (appsdk's provider guards it, appsdk.provider).
        state = parent.trace_state if parent.is_valid else trace_state
        if parent.is_valid and not (parent.is_remote and self.config.parent == "rules"):
            sampled = parent.trace_flags.sampled
        else:
            sampled = keeps(
                self.config.ratio_for(self._known(parent_context, name, attributes)), trace_id
            )
            self.counts.add("sampled" if sampled else "not_sampled")
            if self.config.head == "mark":
                marked = dict(attributes or {})
                marked[DECISION_ATTRIBUTE] = "keep" if sampled else "drop"
                return otel_sampling.SamplingResult(
                    otel_sampling.Decision.RECORD_AND_SAMPLE, marked, state
                )
        decision = (
            otel_sampling.Decision.RECORD_AND_SAMPLE
            if sampled
            else otel_sampling.Decision.RECORD_ONLY
        )
        return otel_sampling.SamplingResult(decision, attributes, state)

    def _known(
        self, parent_context: Context | None, name: str, attributes: Attributes
    ) -> dict[str, Any]:
        """What the rules match on at a root."""
        known = self._known_at_root(parent_context)
        known.setdefault("trace_name", name)
        known["service"] = self._service
        model = (attributes or {}).get(semconv.GEN_AI_REQUEST_MODEL)
        if model is not None:
            known["model"] = model
        return known

    def get_description(self) -> str:
        return f"appsdk.RuleSampler(default={self.config.default_ratio})"


@dataclass
class _Counts:
    values: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, count: int = 1) -> None:
        with self.lock:
            self.values[name] = self.values.get(name, 0) + count

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


@dataclass
class _Held:
    started: float
    spans: list[ReadableSpan] = field(default_factory=list)
    size: int = 0


class Retention:
    """Spans of dropped traces, held for ``window_s`` in case a reason to keep them comes.

    Args:
        export: where the spans of a kept trace go (marked, and flagged sampled).
        clock: seconds (monotonic); the attribute ``clock`` may be replaced (tests move time).
    """

    def __init__(
        self,
        config: Sampling,
        export: Callable[[ReadableSpan], None],
        *,
        counts: _Counts | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._export = export
        self.clock = clock
        self._counts = counts if counts is not None else _Counts()
        self._held: OrderedDict[int, _Held] = OrderedDict()
        self._kept: OrderedDict[int, tuple[float, KeptReason]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._rules = [FeedbackRule.parse(rule) for rule in config.negative_feedback]

    def on_end(self, span: ReadableSpan) -> None:
        """A span of a dropped trace ended: hold it, or export it if its trace is kept."""
        trace_id = span.context.trace_id
        reason = self._reason_in(span)
        now = self.clock()
        with self._lock:
            self._expire(now)
            kept = self._kept.get(trace_id)
            if kept is None and reason is None:
                self._hold(trace_id, span, now)
                return
            if kept is None:
                assert reason is not None
                self._kept[trace_id] = (now, reason)
                self._counts.add(f"promoted_{reason}")
                held = self._held.pop(trace_id, None)
                release = held.spans if held is not None else []
                if held is not None:
                    self._bytes -= held.size
            else:
                reason = kept[1]
                release = []
        for earlier in release:
            self._export(_kept(earlier, reason))
        self._export(_kept(span, reason))

    def feedback(self, trace_id: str, name: str, value: Any) -> bool:
        """A score arrived for ``trace_id``; True if it kept the trace."""
        if not any(rule.negative(name, value) for rule in self._rules):
            return False
        try:
            number = int(trace_id, 16)
        except ValueError:
            return False
        now = self.clock()
        with self._lock:
            self._expire(now)
            if number in self._kept:
                return True
            held = self._held.pop(number, None)
            if held is None:
                return False  # sampled already, or past the window (counted as expired)
            self._bytes -= held.size
            self._kept[number] = (now, "feedback")
            self._counts.add("promoted_feedback")
        for span in held.spans:
            self._export(_kept(span, "feedback"))
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._expire(self.clock())
            held, size = len(self._held), self._bytes
        counts = self._counts.snapshot()
        counts.update(retained=held, retained_bytes=size)
        return counts

    def _reason_in(self, span: ReadableSpan) -> KeptReason | None:
        config = self.config
        if config.keep_errors and (
            span.status.status_code is StatusCode.ERROR
            or (span.attributes or {}).get(semconv.LF_LEVEL) == "ERROR"
        ):
            return "error"
        threshold = config.latency_threshold_s
        started, ended = span.start_time, span.end_time
        if threshold is not None and started and ended and (ended - started) / 1e9 > threshold:
            return "slow"
        return None

    def _hold(self, trace_id: int, span: ReadableSpan, now: float) -> None:
        held = self._held.get(trace_id)
        if held is None:
            held = self._held[trace_id] = _Held(now)
            self._counts.add("retained_traces")
        size = _size(span)
        held.spans.append(span)
        held.size += size
        self._bytes += size
        while self._bytes > self.config.max_bytes and self._held:
            _, oldest = self._held.popitem(last=False)
            self._bytes -= oldest.size
            self._counts.add("evicted")

    def _expire(self, now: float) -> None:
        cutoff = now - self.config.window_s
        while self._held:
            trace_id, held = next(iter(self._held.items()))
            if held.started >= cutoff:
                break
            del self._held[trace_id]
            self._bytes -= held.size
            self._counts.add("expired")
        while self._kept and next(iter(self._kept.values()))[0] < cutoff:
            self._kept.popitem(last=False)


def _size(span: ReadableSpan) -> int:
    """A cheap estimate of what a held span costs in memory."""
    size = 400
    for key, value in (span.attributes or {}).items():
        size += len(key) + (len(value) if isinstance(value, str) else 16)
    return size + 200 * len(span.events)


def _kept(span: ReadableSpan, reason: KeptReason) -> ReadableSpan:
    """``span`` flagged sampled (so exporters take it) and marked with why it was kept."""
    context = span.context
    flagged = SpanContext(
        context.trace_id,
        context.span_id,
        context.is_remote,
        TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
        context.trace_state,
    )
    attributes = dict(span.attributes or {})
    attributes[KEPT_ATTRIBUTE] = reason
    tags = attributes.get(semconv.LF_TRACE_TAGS)
    given = tuple(tags) if isinstance(tags, tuple | list) else ()
    attributes[semconv.LF_TRACE_TAGS] = (*(str(t) for t in given), f"kept:{reason}")
    return ReadableSpan(
        name=span.name,
        context=flagged,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
