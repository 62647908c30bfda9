"""Every span attribute key appsdk reads or writes, in one place.

The Langfuse keys (``langfuse.observation.*``, ``langfuse.trace.*``) are the span attributes
Langfuse's OTLP ingestion maps onto observations and traces, as its OpenTelemetry
integration documents them; the ``gen_ai.*`` keys follow the OpenTelemetry GenAI semantic
conventions.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "OBSERVATION_TYPES",
    "TRACER_NAME",
]

TRACER_NAME: Final = "appsdk"

# Langfuse observation
LF_TYPE: Final = "langfuse.observation.type"
LF_INPUT: Final = "langfuse.observation.input"
LF_OUTPUT: Final = "langfuse.observation.output"
LF_LEVEL: Final = "langfuse.observation.level"
LF_STATUS_MESSAGE: Final = "langfuse.observation.status_message"
LF_METADATA: Final = "langfuse.observation.metadata"
LF_MODEL: Final = "langfuse.observation.model.name"
LF_MODEL_PARAMETERS: Final = "langfuse.observation.model.parameters"
LF_USAGE: Final = "langfuse.observation.usage_details"
LF_COST: Final = "langfuse.observation.cost_details"
LF_COMPLETION_START: Final = "langfuse.observation.completion_start_time"
LF_PROMPT_NAME: Final = "langfuse.observation.prompt.name"
LF_PROMPT_VERSION: Final = "langfuse.observation.prompt.version"

# Langfuse trace
LF_TRACE_NAME: Final = "langfuse.trace.name"
LF_TRACE_TAGS: Final = "langfuse.trace.tags"
LF_TRACE_METADATA: Final = "langfuse.trace.metadata"
# Read by Langfuse's ingestion from older SDKs; content whoever writes them.
LF_TRACE_INPUT: Final = "langfuse.trace.input"
LF_TRACE_OUTPUT: Final = "langfuse.trace.output"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
LF_ENVIRONMENT: Final = "langfuse.environment"
LF_RELEASE: Final = "langfuse.release"
LF_VERSION: Final = "langfuse.version"

# OpenTelemetry GenAI
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
ERROR_TYPE: Final = "error.type"

# llm-d / vLLM
LLMD_REQUEST_ID: Final = "llm_d.request_id"

OBSERVATION_TYPES: Final = frozenset(
    {
        "span",
        "generation",
        "event",
        "embedding",
        "agent",
        "tool",
        "chain",
        "retriever",
        "guardrail",
        "evaluator",
    }
)
GENERATION_LIKE_TYPES: Final = frozenset({"generation", "embedding"})
LEVELS: Final = frozenset({"DEBUG", "DEFAULT", "WARNING", "ERROR"})
