"""Langfuse's decorator and appsdk's in one trace, exported once.

Needs Langfuse (``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY``, ``LANGFUSE_BASE_URL``); the
langfuse client appsdk creates serves ``langfuse.observe`` on appsdk's provider, so its spans
nest with appsdk's, go through the same policy, and are not exported a second time.
"""

from __future__ import annotations

from langfuse import observe as langfuse_observe

import appsdk


@appsdk.observe(as_type="retriever")
def search(query: str) -> list[str]:
    return [f"doc about {query}"]


@langfuse_observe(as_type="generation")
def legacy_generate(query: str, docs: list[str]) -> str:
    return f"answer to {query} from {len(docs)} docs"


@langfuse_observe()
def legacy_pipeline(query: str) -> str:
    return legacy_generate(query, search(query))


@appsdk.observe(name="mixed", as_type="chain")
def handler(query: str) -> str:
    return legacy_pipeline(query)


def main() -> None:
    appsdk.configure(service_name="mixed")
    print(handler("llm-d"))
    print("trace:", appsdk.get_current_trace_id() or "(ended)")
    appsdk.shutdown()


if __name__ == "__main__":
    main()
