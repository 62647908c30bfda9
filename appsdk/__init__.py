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
from appsdk.pipeline import Pipeline, configure, flush, shutdown, stats

__all__ = [
    "AppSDKError",
    "ConfigError",
    "Pipeline",
    "Settings",
    "StoreError",
    "__version__",
    "configure",
    "flush",
    "shutdown",
    "stats",
]
