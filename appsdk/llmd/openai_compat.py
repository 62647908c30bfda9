"""The OpenAI SDK's call shapes on the llm-d clients.

``client.chat(...)`` and ``client.chat.completions.create(...)`` are the same call, so code
written for ``openai`` runs against llm-d unchanged. On the async client each returns an
awaitable, as ``openai.AsyncOpenAI`` does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Chat", "Completions", "Embeddings", "Models", "Namespaces"]


class _ChatCompletions:
    def __init__(self, client: Any) -> None:
        self._client = client

    def create(self, **kwargs: Any) -> Any:
        """``openai``'s ``chat.completions.create``: model, messages, stream, ..."""
        return self._client.complete_chat(**kwargs)


class Chat:
    """``client.chat(...)``, also reachable as ``client.chat.completions.create(...)``."""

    def __init__(self, client: Any) -> None:
        self.completions = _ChatCompletions(client)
        self._client = client

    def __call__(self, **kwargs: Any) -> Any:
        return self._client.complete_chat(**kwargs)


class Completions:
    """``client.completions.create(...)``: text completions."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def create(self, **kwargs: Any) -> Any:
        return self._client.complete(**kwargs)


class Embeddings:
    """``client.embeddings.create(model=..., input=...)``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def create(self, **kwargs: Any) -> Any:
        return self._client.embed(**kwargs)


class Models:
    """``client.models()`` and ``client.models.list()``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __call__(self) -> Any:
        return self._client.list_models()

    def list(self) -> Any:
        return self._client.list_models()


class Namespaces:
    def __init__(self, client: Any) -> None:
        self.chat = Chat(client)
        self.completions = Completions(client)
        self.embeddings = Embeddings(client)
        self.models = Models(client)
