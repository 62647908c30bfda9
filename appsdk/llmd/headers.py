"""llm-d request options (as headers) and the retry policy."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from typing import Any

from appsdk.backoff import capped_delay

__all__ = ["LLMDOptions", "RetryPolicy", "new_request_id"]

OBJECTIVE = "x-llm-d-inference-objective"
FAIRNESS_ID = "x-llm-d-inference-fairness-id"
SLO_TTFT = "x-llm-d-slo-ttft-ms"
SLO_TPOT = "x-llm-d-slo-tpot-ms"
MODEL_REWRITE = "x-llm-d-model-name-rewrite"
SESSION_TOKEN = "x-session-token"
REQUEST_ID = "x-request-id"


@dataclass(frozen=True, slots=True)
class LLMDOptions:
    """llm-d's scheduling hints, sent as headers; set per client and override per call.

    Example:
        >>> LLMDOptions(objective="critical", fairness_id="tenant-a").headers()
        {'x-llm-d-inference-objective': 'critical', 'x-llm-d-inference-fairness-id': 'tenant-a'}
    """

    objective: str | None = None
    """Inference objective (priority class) of the request."""
    fairness_id: str | None = None
    """Tenant or flow the endpoint picker shares capacity by."""
    slo_ttft_ms: int | None = None
    """Target time to first token, in milliseconds."""
    slo_tpot_ms: int | None = None
    """Target time per output token, in milliseconds."""
    model_rewrite: str | None = None
    """Ask the gateway to serve another model name (e.g. a LoRA adapter)."""

    def headers(self) -> dict[str, str]:
        values = {
            OBJECTIVE: self.objective,
            FAIRNESS_ID: self.fairness_id,
            SLO_TTFT: self.slo_ttft_ms,
            SLO_TPOT: self.slo_tpot_ms,
            MODEL_REWRITE: self.model_rewrite,
        }
        return {name: str(value) for name, value in values.items() if value is not None}

    def merged(self, overrides: dict[str, Any]) -> LLMDOptions:
        given = {
            f.name: overrides[f.name] for f in fields(self) if overrides.get(f.name) is not None
        }
        return replace(self, **given) if given else self


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter, for connect errors, 429 and 503.

    A ``Retry-After`` from the gateway is honoured (up to ``max_retry_after_s``; a longer one
    is not waited for). A stream is never retried once its first event arrived.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_retry_after_s: float = 30.0
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        ceiling = capped_delay(attempt - 1, self.initial_backoff_s, self.max_backoff_s)
        return self._random.uniform(0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)


def new_request_id() -> str:
    """An ``x-request-id``: 128 random bits as hex. Unique, not secret: drawn as OpenTelemetry
    draws trace ids (``random``, reseeded in a forked child), not by a system call per request.
    """
    return f"{random.getrandbits(128):032x}"
