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

from appsdk._version import __version__ as __version__

if TYPE_CHECKING:
    # For type checkers, which do not run __getattr__; "X as X" marks each an export.
    # tests/test_exported_members.py checks that these are exactly _WHERE's.
    from appsdk.config import Settings as Settings
    from appsdk.decorator import get_current_observation_id as get_current_observation_id
    from appsdk.decorator import get_current_trace_id as get_current_trace_id
    from appsdk.decorator import observe as observe
    from appsdk.decorator import start_observation as start_observation
    from appsdk.decorator import update_current_observation as update_current_observation
    from appsdk.errors import AppSDKError as AppSDKError
    from appsdk.errors import ConfigError as ConfigError
    from appsdk.errors import StoreError as StoreError
    from appsdk.feedback import Feedback as Feedback
    from appsdk.feedback import FeedbackClient as FeedbackClient
    from appsdk.feedback import FeedbackTokenError as FeedbackTokenError
    from appsdk.feedback import FeedbackValidationError as FeedbackValidationError
    from appsdk.feedback import issue_feedback_token as issue_feedback_token
    from appsdk.feedback import submit_feedback as submit_feedback
    from appsdk.feedback import verify_feedback_token as verify_feedback_token
    from appsdk.llmd import AsyncLLMDClient as AsyncLLMDClient
    from appsdk.llmd import LLMDClient as LLMDClient
    from appsdk.llmd import LLMDError as LLMDError
    from appsdk.llmd import LLMDOptions as LLMDOptions
    from appsdk.llmd import RetryPolicy as RetryPolicy
    from appsdk.observation import Observation as Observation
    from appsdk.pipeline import Pipeline as Pipeline
    from appsdk.policy import CaptureMode as CaptureMode
    from appsdk.policy import Policy as Policy
    from appsdk.pricing import ModelPrice as ModelPrice
    from appsdk.pricing import PriceTable as PriceTable
    from appsdk.prompts import PromptError as PromptError
    from appsdk.prompts import get_prompt as get_prompt
    from appsdk.prompts import use_prompt as use_prompt
    from appsdk.runtime import configure as configure
    from appsdk.runtime import flush as flush
    from appsdk.runtime import shutdown as shutdown
    from appsdk.runtime import stats as stats
    from appsdk.sampling import Sampling as Sampling
    from appsdk.sampling import SamplingRule as SamplingRule
    from appsdk.trace_context import ContextThreadPoolExecutor as ContextThreadPoolExecutor
    from appsdk.trace_context import trace_attributes as trace_attributes
    from appsdk.trace_context import wrap_context as wrap_context

# The public API, one name to the module it lives in: the single list of it (__all__ and
# __dir__ derive from it; names load lazily, on first use).
_WHERE = {
    "AppSDKError": "appsdk.errors",
    "ConfigError": "appsdk.errors",
    "StoreError": "appsdk.errors",
    "Settings": "appsdk.config",
    "Feedback": "appsdk.feedback",
    "FeedbackClient": "appsdk.feedback",
    "FeedbackTokenError": "appsdk.feedback",
    "FeedbackValidationError": "appsdk.feedback",
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
    "PromptError": "appsdk.prompts",
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


__all__ = sorted([*_WHERE, "__version__"])
