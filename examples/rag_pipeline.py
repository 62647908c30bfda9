"""A small RAG pipeline traced by appsdk; with nothing configured it lands in the local store.

Run it with ``make demo`` (or ``python examples/rag_pipeline.py``), then look at the trace with
``appsdk traces show last``.
"""

from __future__ import annotations

import appsdk
from appsdk.cli import app as cli

CORPUS = {
    "llm-d": "llm-d routes each request to the vLLM replica with the warmest prefix cache.",
    "langfuse": "Langfuse stores traces, prompts and scores for LLM applications.",
    "otel": "OpenTelemetry carries one trace id from the app through the gateway into vLLM.",
}


@appsdk.observe(as_type="retriever")
def retrieve(question: str, k: int = 2) -> list[str]:
    words = set(question.lower().split())
    ranked = sorted(CORPUS.values(), key=lambda doc: -len(words & set(doc.lower().split())))
    return ranked[:k]


@appsdk.observe(as_type="generation")
def generate(question: str, context: list[str]) -> str:
    appsdk.update_current_observation(model="sim-llama", usage={"input": 42, "output": 12})
    return f"Based on {len(context)} documents: {context[0]}"


@appsdk.observe(name="rag-demo", as_type="chain")
def answer(question: str, user_email: str) -> str:
    return generate(question, retrieve(question))


def main() -> None:
    appsdk.configure()
    with appsdk.trace_attributes(user_id="demo-user", session_id="demo-session"):
        print(answer("How does llm-d route a request?", user_email="ana@example.com"))
    appsdk.shutdown()
    cli(["traces", "show", "last"], standalone_mode=False)


if __name__ == "__main__":
    main()
