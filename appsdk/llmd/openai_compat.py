"""The OpenAI SDK's call shapes on the llm-d clients.

``client.chat(...)`` and ``client.chat.completions.create(...)`` are the same call (the
namespace's ``create`` *is* the client's typed method, overloads and all), so code written for
``openai`` runs against llm-d unchanged. On the async client each returns an awaitable, as
``openai.AsyncOpenAI`` does, and ``client.models.list()`` is both awaitable and
async-iterable. ``with_raw_response`` gives the HTTP answer with the payload one ``parse()``
away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any, Literal, overload

from typing_extensions import Unpack

from appsdk.llmd.models import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    CreateEmbeddingResponse,
    Model,
    ModelList,
)
from appsdk.llmd.params import (
    ChatParams,
    CompletionParams,
    EmbeddingInput,
    EmbeddingParams,
    ListOptions,
)
from appsdk.llmd.raw import RawResponse
from appsdk.llmd.stream import AsyncStream, Stream

if TYPE_CHECKING:
    from appsdk.llmd.async_client import AsyncLLMDClient
    from appsdk.llmd.client import LLMDClient

__all__ = ["AsyncNamespaces", "Namespaces"]

# -- sync ------------------------------------------------------------------------------------


class ChatCompletions:
    """``client.chat.completions.create(...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self.create = client.complete_chat
        self.with_raw_response = RawChatCompletions(client)


class Chat:
    """``client.chat(...)``, also reachable as ``client.chat.completions.create(...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self._client = client
        self.completions = ChatCompletions(client)

    @overload
    def __call__(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> ChatCompletion: ...
    @overload
    def __call__(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> Stream[ChatCompletionChunk]: ...
    @overload
    def __call__(
        self, *, stream: bool, **params: Unpack[ChatParams]
    ) -> ChatCompletion | Stream[ChatCompletionChunk]: ...
    def __call__(
        self, *, stream: bool = False, **params: Any
    ) -> ChatCompletion | Stream[ChatCompletionChunk]:
        return self._client.complete_chat(stream=stream, **params)


class Completions:
    """``client.completions.create(...)``: text completions."""

    def __init__(self, client: LLMDClient) -> None:
        self.create = client.complete
        self.with_raw_response = RawCompletions(client)


class Embeddings:
    """``client.embeddings.create(model=..., input=...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self.create = client.embed
        self.with_raw_response = RawEmbeddings(client)


class Models:
    """``client.models()``, ``client.models.list()`` and ``client.models.retrieve(id)``."""

    def __init__(self, client: LLMDClient) -> None:
        self.list = client.list_models
        self.retrieve = client.retrieve_model

    def __call__(self, **options: Unpack[ListOptions]) -> ModelList:
        return self.list(**options)


class RawChatCompletions:
    """``client.chat.completions.with_raw_response.create(...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self._client = client

    @overload
    def create(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> RawResponse[ChatCompletion]: ...
    @overload
    def create(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> RawResponse[Stream[ChatCompletionChunk]]: ...
    def create(self, *, stream: bool = False, **params: Any) -> RawResponse[Any]:
        raw: RawResponse[Any] = self._client._invoke("chat", stream, params, raw=True)
        return raw


class RawCompletions:
    """``client.completions.with_raw_response.create(...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self._client = client

    @overload
    def create(
        self, *, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> RawResponse[Completion]: ...
    @overload
    def create(
        self, *, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> RawResponse[Stream[CompletionChunk]]: ...
    def create(self, *, stream: bool = False, **params: Any) -> RawResponse[Any]:
        raw: RawResponse[Any] = self._client._invoke("text_completion", stream, params, raw=True)
        return raw


class RawEmbeddings:
    """``client.embeddings.with_raw_response.create(...)``."""

    def __init__(self, client: LLMDClient) -> None:
        self._client = client

    def create(
        self, *, model: str, input: EmbeddingInput, **params: Unpack[EmbeddingParams]
    ) -> RawResponse[CreateEmbeddingResponse]:
        call = {"model": model, "input": input, **params}
        raw: RawResponse[CreateEmbeddingResponse] = self._client._invoke(
            "embeddings", False, call, raw=True
        )
        return raw


class _RawChat:
    def __init__(self, client: LLMDClient) -> None:
        self.completions = RawChatCompletions(client)


class WithRawResponse:
    """``client.with_raw_response.chat.completions.create(...)`` and friends."""

    def __init__(self, client: LLMDClient) -> None:
        self.chat = _RawChat(client)
        self.completions = RawCompletions(client)
        self.embeddings = RawEmbeddings(client)


class Namespaces:
    def __init__(self, client: LLMDClient) -> None:
        self.chat = Chat(client)
        self.completions = Completions(client)
        self.embeddings = Embeddings(client)
        self.models = Models(client)
        self.with_raw_response = WithRawResponse(client)


# -- async -----------------------------------------------------------------------------------


class AsyncChatCompletions:
    """``await client.chat.completions.create(...)``."""

    def __init__(self, client: AsyncLLMDClient) -> None:
        self.create = client.complete_chat
        self.with_raw_response = AsyncRawChatCompletions(client)


class AsyncChat:
    """``await client.chat(...)``, also ``await client.chat.completions.create(...)``."""

    def __init__(self, client: AsyncLLMDClient) -> None:
        self._client = client
        self.completions = AsyncChatCompletions(client)

    @overload
    async def __call__(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> ChatCompletion: ...
    @overload
    async def __call__(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> AsyncStream[ChatCompletionChunk]: ...
    @overload
    async def __call__(
        self, *, stream: bool, **params: Unpack[ChatParams]
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...
    async def __call__(
        self, *, stream: bool = False, **params: Any
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        return await self._client.complete_chat(stream=stream, **params)


class AsyncCompletions:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self.create = client.complete
        self.with_raw_response = AsyncRawCompletions(client)


class AsyncEmbeddings:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self.create = client.embed
        self.with_raw_response = AsyncRawEmbeddings(client)


class AsyncModelPage:
    """What ``client.models.list()`` returns on the async client: await it for the
    :class:`ModelList`, or ``async for`` over it for the models, as openai's paginator."""

    def __init__(self, client: AsyncLLMDClient, options: ListOptions) -> None:
        self._client = client
        self._options = options

    def __await__(self) -> Generator[Any, None, ModelList]:
        return self._client.list_models(**self._options).__await__()

    async def __aiter__(self) -> AsyncIterator[Model]:
        for model in await self._client.list_models(**self._options):
            yield model


class AsyncModels:
    """``await client.models.list()``, ``async for m in client.models.list()``,
    ``await client.models.retrieve(id)``."""

    def __init__(self, client: AsyncLLMDClient) -> None:
        self._client = client
        self.retrieve = client.retrieve_model

    def list(self, **options: Unpack[ListOptions]) -> AsyncModelPage:
        return AsyncModelPage(self._client, options)

    async def __call__(self, **options: Unpack[ListOptions]) -> ModelList:
        return await self._client.list_models(**options)


class AsyncRawChatCompletions:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, stream: Literal[False] = False, **params: Unpack[ChatParams]
    ) -> RawResponse[ChatCompletion]: ...
    @overload
    async def create(
        self, *, stream: Literal[True], **params: Unpack[ChatParams]
    ) -> RawResponse[AsyncStream[ChatCompletionChunk]]: ...
    async def create(self, *, stream: bool = False, **params: Any) -> RawResponse[Any]:
        raw: RawResponse[Any] = await self._client._invoke("chat", stream, params, raw=True)
        return raw


class AsyncRawCompletions:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self._client = client

    @overload
    async def create(
        self, *, stream: Literal[False] = False, **params: Unpack[CompletionParams]
    ) -> RawResponse[Completion]: ...
    @overload
    async def create(
        self, *, stream: Literal[True], **params: Unpack[CompletionParams]
    ) -> RawResponse[AsyncStream[CompletionChunk]]: ...
    async def create(self, *, stream: bool = False, **params: Any) -> RawResponse[Any]:
        raw: RawResponse[Any] = await self._client._invoke(
            "text_completion", stream, params, raw=True
        )
        return raw


class AsyncRawEmbeddings:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self._client = client

    async def create(
        self, *, model: str, input: EmbeddingInput, **params: Unpack[EmbeddingParams]
    ) -> RawResponse[CreateEmbeddingResponse]:
        call = {"model": model, "input": input, **params}
        raw: RawResponse[CreateEmbeddingResponse] = await self._client._invoke(
            "embeddings", False, call, raw=True
        )
        return raw


class _AsyncRawChat:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self.completions = AsyncRawChatCompletions(client)


class AsyncWithRawResponse:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self.chat = _AsyncRawChat(client)
        self.completions = AsyncRawCompletions(client)
        self.embeddings = AsyncRawEmbeddings(client)


class AsyncNamespaces:
    def __init__(self, client: AsyncLLMDClient) -> None:
        self.chat = AsyncChat(client)
        self.completions = AsyncCompletions(client)
        self.embeddings = AsyncEmbeddings(client)
        self.models = AsyncModels(client)
        self.with_raw_response = AsyncWithRawResponse(client)
