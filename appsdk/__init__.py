"""appsdk: application-layer tracing for RAG and agent apps on llm-d, into Langfuse via OTel.

Quick start::

    import appsdk

    appsdk.configure()            # Langfuse / OTLP from the environment, else a local store

    @appsdk.observe()
    def answer(question: str) -> str: ...

Then ``appsdk traces show last`` prints the trace as a tree.
"""

from appsdk._version import __version__
from appsdk.config import Settings
from appsdk.errors import AppSDKError, ConfigError, StoreError
from appsdk.feedback import (
    Feedback,
    FeedbackClient,
    issue_feedback_token,
    submit_feedback,
    verify_feedback_token,
)
from appsdk.llmd import (
    AsyncLLMDClient,
    LLMDClient,
    LLMDError,
    LLMDOptions,
    RetryPolicy,
)
from appsdk.observation import Observation
from appsdk.observe import (
    get_current_observation_id,
    get_current_trace_id,
    observe,
    start_observation,
    update_current_observation,
)
from appsdk.pipeline import Pipeline, configure, flush, shutdown, stats
from appsdk.policy import CaptureMode, Policy
from appsdk.pricing import ModelPrice, PriceTable
from appsdk.prompts import get_prompt, use_prompt
from appsdk.trace_context import ContextThreadPoolExecutor, trace_attributes, wrap_context

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
