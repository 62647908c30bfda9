"""The appsdk demo: a RAG pipeline on llm-d, traced end to end, in one command.

It starts the llm-d simulator, retrieves from a small corpus, answers with a versioned prompt
through a streamed LLMDClient generation, takes an end-user rating through a signed feedback
token, and prints the trace tree: app spans, retrieval, the generation (tokens, time to first
token, cost, prompt version), the gateway and vLLM spans under it, and the score.

With nothing configured everything lands in the local store (``.appsdk/traces.db``). With
``LANGFUSE_*`` or ``OTEL_EXPORTER_OTLP_*`` set the same trace goes there, unchanged.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import httpx
from rich.console import Console

import appsdk
from appsdk import sim
from appsdk.integrations import feedback_app

HERE = Path(__file__).parent
QUESTION = "How does llm-d route a request, and how does the trace reach vLLM?"


def load_corpus() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((HERE / "corpus").glob("*.md"))}


@appsdk.observe(as_type="retriever")
def retrieve(question: str, corpus: dict[str, str], k: int = 2) -> list[str]:
    words = {w.strip("?,.").lower() for w in question.split()}

    def score(text: str) -> int:
        return len(words & {w.strip("?,.").lower() for w in text.split()})

    return sorted(corpus.values(), key=score, reverse=True)[:k]


@appsdk.observe(name="answer")
def answer(client: appsdk.LLMDClient, question: str, context: list[str]) -> str:
    prompt = appsdk.get_prompt("rag-answer", type="chat", folder=HERE / "prompts")
    with appsdk.use_prompt(prompt):
        stream = client.chat(
            prompt=prompt,
            stream=True,
            variables={"context": "\n".join(context), "question": question},
        )
        with stream:
            return "".join(chunk.text for chunk in stream)


@appsdk.observe(name="rag-demo", as_type="chain")
def rag(client: appsdk.LLMDClient, question: str, user_email: str) -> dict[str, str]:
    context = retrieve(question, load_corpus())
    text = answer(client, question, context)
    trace_id = appsdk.get_current_trace_id() or ""
    return {"answer": text, "trace_id": trace_id}


def rate_answer(trace_id: str, user: str, secret: str, client: appsdk.FeedbackClient) -> int:
    """What a browser does with the token it got alongside the answer."""
    token = appsdk.issue_feedback_token(trace_id, user_id=user, secret=secret)
    app = feedback_app(client=client, secret=secret, user_id=lambda r: r.headers.get("x-user"))
    with sim.serving(app) as url:
        response = httpx.post(
            f"{url}/feedback",
            headers={"x-user": user},
            json={
                "token": token,
                "name": "helpful",
                "value": True,
                "comment": "Clear answer, thanks! (reach me at ana@example.com)",
            },
        )
    return response.status_code


def main() -> int:
    console = Console()
    pipeline = appsdk.configure(service_name="rag-demo")
    prices = appsdk.PriceTable.from_file(HERE / "prices.json")
    secret = os.environ.get("APPSDK_FEEDBACK_SECRET") or secrets.token_urlsafe(32)
    with (
        console.status("[bold]starting the llm-d simulator...") as status,
        sim.running(
            exporter="appsdk", config=sim.SimConfig(ttft_ms=40, itl_ms=4, completion_tokens=24)
        ) as simulator,
    ):
        with appsdk.LLMDClient(base_url=simulator.base_url, prices=prices) as client:
            status.update("[bold]retrieving and streaming an answer through llm-d...")
            with appsdk.trace_attributes(
                user_id="demo-user", session_id="demo-session", tags=["demo"]
            ):
                result = rag(client, QUESTION, user_email="ana@example.com")
        status.update("[bold]submitting an end-user rating with a feedback token...")
        feedback = appsdk.FeedbackClient()
        rated = rate_answer(result["trace_id"], "demo-user", secret, feedback)
        feedback.flush(10)
        feedback.close()
        status.update("[bold]flushing the trace...")
        appsdk.flush()
    console.print(f"\n[bold]Answer:[/bold] {result['answer']}")
    console.print(f"[bold]Rating:[/bold] HTTP {rated}\n")
    stats = pipeline.stats()
    appsdk.shutdown()
    if "local" in stats:
        from appsdk.cli import app as cli

        cli(["traces", "show", result["trace_id"]], standalone_mode=False)
        console.print(
            "\nThe trace is in the local store (.appsdk/traces.db): `.venv/bin/appsdk traces list`"
            " (or `appsdk traces list` with the virtualenv activated).\n"
            "Set LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL to send the same "
            "trace to Langfuse, or OTEL_EXPORTER_OTLP_ENDPOINT for any OTLP backend."
        )
    else:
        console.print(f"Trace {result['trace_id']} was sent to: {', '.join(stats)}")
        for name, counts in stats.items():
            console.print(f"  {name}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
