"""One generation observation per gateway call: GenAI conventions plus Langfuse's keys.

Langfuse reads the model from ``gen_ai.response.model`` / ``gen_ai.request.model`` and the
model parameters from ``gen_ai.request.*`` when its own keys are absent, so those are not
written twice; input, output and usage are (Langfuse's keys win, other backends read GenAI's).

Shared by the sync and async clients and their streams; it does no I/O.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind

from appsdk import runtime as _runtime
from appsdk import semconv, span_policy
from appsdk.llmd import metrics
from appsdk.llmd.models import Usage
from appsdk.observation import Observation
from appsdk.policy import Policy, PolicyEngine
from appsdk.pricing import PriceTable
from appsdk.prompts import active_prompt

__all__ = ["Generation"]

REQUEST_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
)
PROVIDER = "llm-d"
_RENDERED_AT_START = (
    semconv.LF_TYPE,
    semconv.LF_INPUT,
    semconv.GEN_AI_INPUT_MESSAGES,
    semconv.GEN_AI_TOOL_DEFINITIONS,
)
_CHOICE_COUNT = "gen_ai.request.choice.count"


def _render_input(
    engine: PolicyEngine, operation: str, content: Any, tools: Any, attributes: dict[str, Any]
) -> None:
    """The input as the policy allows. With tools, Langfuse reads ``{"messages", "tools"}``
    as the input and the GenAI conventions name the definitions ``gen_ai.tool.definitions``;
    each part is rendered once and the input is put together from the rendered parts."""
    rendered = engine.render("messages", content)
    if rendered is None:
        return
    if operation != "chat":
        attributes[semconv.LF_INPUT] = rendered
        return
    attributes[semconv.GEN_AI_INPUT_MESSAGES] = rendered
    rendered_tools = engine.render("messages", list(tools)) if tools else None
    if rendered_tools is None or not isinstance(content, list | tuple):
        attributes[semconv.LF_INPUT] = rendered
        return
    attributes[semconv.GEN_AI_TOOL_DEFINITIONS] = rendered_tools
    # Both parts are JSON (a list renders as a JSON array, or as the metadata-mode summary).
    attributes[semconv.LF_INPUT] = f'{{"messages": {rendered}, "tools": {rendered_tools}}}'


class Generation:
    """Records one call: start, first chunk, response, failure, end. Never raises."""

    def __init__(
        self,
        *,
        operation: str,
        model: str,
        body: Mapping[str, Any],
        request_id: str,
        content: Any,
        prices: PriceTable | None,
        policy: Policy | None,
        prompt: Any = None,
    ) -> None:
        self.operation = operation
        self.model = model
        self.prices = prices
        self.request_id = request_id
        self.started = time.monotonic()
        self.first_chunk_at: float | None = None
        self.response_model: str | None = None
        self._token: object | None = None
        self._tokens: tuple[int, int] | None = None
        pipeline = _runtime.current()
        if pipeline is None:
            self.observation: Observation | None = None
            return
        engine = span_policy.resolve(None, policy.engine if policy else None, pipeline.engine)
        obs_type = "embedding" if operation == "embeddings" else "generation"
        attributes: dict[str, Any] = {
            semconv.LF_TYPE: obs_type,
            semconv.GEN_AI_OPERATION: operation,
            semconv.GEN_AI_PROVIDER: PROVIDER,
            semconv.GEN_AI_REQUEST_MODEL: model,
            semconv.LLMD_REQUEST_ID: request_id,
        }
        parameters = {k: body[k] for k in REQUEST_PARAMETERS if body.get(k) is not None}
        for key, value in parameters.items():
            attributes[f"gen_ai.request.{key}"] = value
        stop = body.get("stop")
        if stop:
            attributes["gen_ai.request.stop_sequences"] = (
                [stop] if isinstance(stop, str) else list(stop)
            )
        if body.get("stream"):
            attributes[semconv.GEN_AI_REQUEST_STREAM] = True
        count = body.get("n")
        if isinstance(count, int) and count != 1:
            attributes[_CHOICE_COUNT] = count
        _render_input(engine, operation, content, body.get("tools"), attributes)
        span = pipeline.tracer.start_span(
            f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        # Only what was rendered through the policy is trusted; the rest is guarded at the exit.
        span_policy.trust(span, {k: attributes[k] for k in _RENDERED_AT_START if k in attributes})
        self.observation = Observation(span, obs_type, engine)
        linked = prompt if prompt is not None else active_prompt()
        if linked is not None:
            self.observation.link_prompt(linked)

    @property
    def span(self) -> trace_api.Span:
        return self.observation.span if self.observation is not None else trace_api.INVALID_SPAN

    def activate(self) -> None:
        """Make the generation current, so the HTTP client span becomes its child."""
        if self.observation is not None and self._token is None:
            self._token = context_api.attach(trace_api.set_span_in_context(self.observation.span))

    def deactivate(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            context_api.detach(token)  # type: ignore[arg-type]

    def retrying(self, attempt: int, delay: float, error: Exception) -> None:
        if self.observation is not None:
            self.observation.span.add_event(
                "retry",
                {
                    "attempt": attempt,
                    "delay_s": delay,
                    semconv.ERROR_TYPE: type(error).__name__,
                },
            )

    def first_chunk(self) -> None:
        if self.first_chunk_at is not None:
            return
        self.first_chunk_at = time.monotonic()
        if self.observation is not None:
            now = datetime.datetime.now(datetime.UTC)
            self.observation.update(completion_start_time=now)
            self.observation.span.set_attribute(
                semconv.GEN_AI_TIME_TO_FIRST_CHUNK, self.first_chunk_at - self.started
            )

    def succeed(
        self,
        *,
        response_id: str | None,
        response_model: str | None,
        finish_reasons: list[str],
        usage: Usage | None,
        output: Any,
    ) -> None:
        """Record the answer and end the generation (one attribute write for all of it)."""
        self.response_model = response_model
        observation = self.observation
        if observation is not None:
            answered: dict[str, Any] = {}
            if response_id:
                answered[semconv.GEN_AI_RESPONSE_ID] = response_id
            if response_model:
                answered[semconv.GEN_AI_RESPONSE_MODEL] = response_model
            if finish_reasons:
                answered[semconv.GEN_AI_FINISH_REASONS] = finish_reasons
            if answered:
                observation.span.set_attributes(answered)
            attributes: dict[str, Any] = {}
            if output is not None:
                rendered = observation.policy.render("completions", output)
                if rendered is not None:
                    attributes[semconv.LF_OUTPUT] = rendered
                    if self.operation == "chat":
                        attributes[semconv.GEN_AI_OUTPUT_MESSAGES] = rendered
            if usage is not None:
                self._usage_attributes(usage, attributes)
            observation.record(attributes)
        self._end(error_type=None)

    def _usage_attributes(self, usage: Usage, attributes: dict[str, Any]) -> None:
        # Duck-typed: openai's usage objects read the same (its embedding usage has no
        # completion_tokens).
        input_tokens = usage.prompt_tokens or 0
        output_tokens = getattr(usage, "completion_tokens", 0) or 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        usage_details = {
            "input": input_tokens,
            "output": output_tokens,
            "total": getattr(usage, "total_tokens", 0) or input_tokens + output_tokens,
        }
        if cached:
            usage_details["input_cached_tokens"] = cached
        attributes[semconv.GEN_AI_INPUT_TOKENS] = input_tokens
        attributes[semconv.GEN_AI_OUTPUT_TOKENS] = output_tokens
        attributes[semconv.LF_USAGE] = json.dumps(usage_details)
        self._tokens = (input_tokens, output_tokens)
        cost = self._cost(input_tokens, output_tokens, cached)
        if cost is not None:
            attributes[semconv.LF_COST] = json.dumps({k: float(v) for k, v in cost.items()})
            attributes[semconv.GEN_AI_USAGE_COST] = float(cost["total"])

    def _cost(
        self, input_tokens: int, output_tokens: int, cached: int
    ) -> dict[str, Decimal] | None:
        if self.prices is None:
            return None
        # The price of the model that answered, else of the one asked for (an alias, a LoRA).
        for model in dict.fromkeys((self.response_model or self.model, self.model)):
            cost = self.prices.cost(
                model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached,
            )
            if cost is not None:
                return cost
        return None

    def cancelled(self, *, received_chunks: int, output: Any, usage: Usage | None) -> None:
        """The caller stopped reading: keep what arrived, mark it, end the generation."""
        observation = self.observation
        if observation is not None:
            observation.update(
                level="WARNING",
                status_message=f"stream closed by the caller after {received_chunks} chunks",
                metadata={"cancelled": True},
            )
        self.succeed(
            response_id=None,
            response_model=self.response_model,
            finish_reasons=[],
            usage=usage,
            output=output,
        )

    def fail(self, error: BaseException, *, output: Any = None) -> None:
        observation = self.observation
        if observation is not None:
            if output:
                rendered = observation.policy.render("completions", output)
                if rendered is not None:
                    observation.record({semconv.LF_OUTPUT: rendered})
            observation.fail(error)
        self._end(error_type=type(error).__name__)

    def _metric_attributes(self, error_type: str | None) -> dict[str, str]:
        attributes = {
            semconv.GEN_AI_OPERATION: self.operation,
            semconv.GEN_AI_PROVIDER: PROVIDER,
            semconv.GEN_AI_REQUEST_MODEL: self.model,
        }
        if self.response_model:
            attributes[semconv.GEN_AI_RESPONSE_MODEL] = self.response_model
        if error_type:
            attributes[semconv.ERROR_TYPE] = error_type
        return attributes

    def _end(self, *, error_type: str | None) -> None:
        self.deactivate()
        attributes = self._metric_attributes(error_type)
        if self._tokens is not None:
            metrics.record_tokens(attributes, *self._tokens)
        metrics.record_duration(attributes, time.monotonic() - self.started)
        if self.first_chunk_at is not None:
            metrics.record_first_chunk(attributes, self.first_chunk_at - self.started)
        if self.observation is not None:
            self.observation.end()
