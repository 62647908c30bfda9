"""Langfuse's decorator and appsdk's in one trace, exported once.

With Langfuse keys (``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY``, ``LANGFUSE_BASE_URL``)
the langfuse client appsdk creates serves ``langfuse.observe`` on appsdk's provider, so its
spans nest with appsdk's, go through the same policy, and are not exported a second time.

Without keys the trace goes to the local store (``appsdk traces show last``). langfuse's
decorator records nothing without a client that has keys, so the example makes one with
placeholder keys that exports nothing itself: its spans reach the store through appsdk.
"""

from __future__ import annotations

from langfuse import Langfuse
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
    pipeline = appsdk.configure(service_name="mixed")
    if not pipeline.settings.langfuse_enabled:
        # After configure(): the client puts its spans on appsdk's provider, and
        # langfuse.get_client() in the decorator finds it (instead of a disabled client that
        # logs an authentication error per call). Its own exporter sends nothing.
        Langfuse(
            public_key="pk-lf-local",
            secret_key="sk-lf-local",
            should_export_span=lambda span: False,
        )
    print(handler("llm-d"))
    print("trace:", appsdk.get_current_trace_id() or "(ended)")
    appsdk.shutdown()


if __name__ == "__main__":
    main()
