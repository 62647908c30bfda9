"""appsdk: application-layer tracing for RAG and agent apps on llm-d, into Langfuse via OTel.

Quick start::

    import appsdk

    appsdk.configure()            # Langfuse / OTLP from the environment, else a local store

    @appsdk.observe()
    def answer(question: str) -> str: ...

Then ``appsdk traces show last`` prints the trace as a tree.

Names are re-exported lazily (PEP 562): ``import appsdk`` stays cheap, and the llm-d client,
feedback and settings modules load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from appsdk._version import __version__

if TYPE_CHECKING:
    from appsdk.config import Settings
    from appsdk.decorator import (
        get_current_observation_id,
        get_current_trace_id,
        observe,
        start_observation,
        update_current_observation,
    )
    from appsdk.errors import AppSDKError, ConfigError, StoreError
    from appsdk.feedback import (
        Feedback,
        FeedbackClient,
        issue_feedback_token,
        submit_feedback,
        verify_feedback_token,
    )
    from appsdk.llmd import AsyncLLMDClient, LLMDClient, LLMDError, LLMDOptions, RetryPolicy
    from appsdk.observation import Observation
    from appsdk.pipeline import Pipeline
    from appsdk.policy import CaptureMode, Policy
    from appsdk.pricing import ModelPrice, PriceTable
    from appsdk.prompts import get_prompt, use_prompt
    from appsdk.runtime import configure, flush, shutdown, stats
    from appsdk.sampling import Sampling, SamplingRule
    from appsdk.trace_context import ContextThreadPoolExecutor, trace_attributes, wrap_context

_WHERE = {
    "AppSDKError": "appsdk.errors",
    "ConfigError": "appsdk.errors",
    "StoreError": "appsdk.errors",
    "Settings": "appsdk.config",
    "Feedback": "appsdk.feedback",
    "FeedbackClient": "appsdk.feedback",
    "issue_feedback_token": "appsdk.feedback",
    "submit_feedback": "appsdk.feedback",
    "verify_feedback_token": "appsdk.feedback",
    "AsyncLLMDClient": "appsdk.llmd",
    "LLMDClient": "appsdk.llmd",
    "LLMDError": "appsdk.llmd",
    "LLMDOptions": "appsdk.llmd",
    "RetryPolicy": "appsdk.llmd",
    "Observation": "appsdk.observation",
    "get_current_observation_id": "appsdk.decorator",
    "get_current_trace_id": "appsdk.decorator",
    "observe": "appsdk.decorator",
    "start_observation": "appsdk.decorator",
    "update_current_observation": "appsdk.decorator",
    "Pipeline": "appsdk.pipeline",
    "configure": "appsdk.runtime",
    "flush": "appsdk.runtime",
    "shutdown": "appsdk.runtime",
    "stats": "appsdk.runtime",
    "CaptureMode": "appsdk.policy",
    "Policy": "appsdk.policy",
    "ModelPrice": "appsdk.pricing",
    "PriceTable": "appsdk.pricing",
    "Sampling": "appsdk.sampling",
    "SamplingRule": "appsdk.sampling",
    "get_prompt": "appsdk.prompts",
    "use_prompt": "appsdk.prompts",
    "ContextThreadPoolExecutor": "appsdk.trace_context",
    "trace_attributes": "appsdk.trace_context",
    "wrap_context": "appsdk.trace_context",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'appsdk' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AppSDKError",
    "AsyncLLMDClient",
    "CaptureMode",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Feedback",
    "FeedbackClient",
    "LLMDClient",
    "LLMDError",
    "LLMDOptions",
    "ModelPrice",
    "Observation",
    "Pipeline",
    "Policy",
    "PriceTable",
    "RetryPolicy",
    "Sampling",
    "SamplingRule",
    "Settings",
    "StoreError",
    "__version__",
    "configure",
    "flush",
    "get_current_observation_id",
    "get_current_trace_id",
    "get_prompt",
    "issue_feedback_token",
    "observe",
    "shutdown",
    "start_observation",
    "stats",
    "submit_feedback",
    "trace_attributes",
    "update_current_observation",
    "use_prompt",
    "verify_feedback_token",
    "wrap_context",
]
