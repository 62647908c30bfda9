"""A loopback OpenAI-compatible server shaped like vLLM, for the openai-compatibility suite.

Not the simulator: this one answers the whole surface openai users touch, deterministically
(the same request gets the same bytes whichever client sent it), the way vLLM does:

- usage on a stream only when ``stream_options.include_usage`` is sent, in a last chunk with
  ``"choices": []``; the first chunk carries the role, the last content chunk the finish reason;
- tool calls when ``tools`` are given (one per tool, up to two), streamed as deltas with
  ``index``, then ``id`` / ``type`` / name, then the arguments in pieces;
- ``n`` choices, logprobs (chat and text), refusals, ``system_fingerprint`` when ``seed`` is given,
  vLLM's extra fields (``stop_reason``, ``prompt_logprobs``, ``kv_transfer_params``);
- OpenAI-style error bodies ``{"error": {"message", "type", "param", "code"}}``.

Request headers ``x-test-*`` choose failures (see :func:`_fault`) and rarer encodings of a
stream (:func:`_encoded_stream`); :attr:`OpenAIServer.received`
records what arrived. ``serve_retrieve=False`` leaves out ``GET /v1/models/{id}`` as vLLM does.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from appsdk import sim

MODEL = "test-llama"
MODELS = [MODEL, "test-llama-lora"]
EMBED_MODEL = "test-embed"
CREATED = 1_700_000_000


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class OpenAIServer:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """The URL openai users write: with ``/v1``."""
        return self.url + "/v1"

    def last(self) -> Received:
        with self.lock:
            return self.received[-1]


def _error(status: int, message: str, kind: str, code: Any, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _last_text(messages: list[dict[str, Any]]) -> tuple[str, str]:
    """(role, text) of the last message."""
    last = messages[-1] if messages else {"role": "user", "content": ""}
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(last.get("role", "user")), str(content)


def _answer_words(body: dict[str, Any], index: int) -> tuple[list[str], str]:
    """The words of one choice and its finish reason."""
    if "messages" in body:
        role, text = _last_text(body["messages"])
        words = (f"Tool result was: {text}" if role == "tool" else f"You said: {text}").split()
    else:
        prompt = body.get("prompt", "")
        prompt = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        words = f"Completion of: {prompt}".split()
    if index:
        words = [*words, f"(choice-{index})"]
    words = [w if i == 0 else " " + w for i, w in enumerate(words)]
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    for position, word in enumerate(words):
        if word.strip() in stops:
            return words[:position], "stop"
    if limit is not None and limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _token_logprob(word: str, top: int) -> dict[str, Any]:
    raw = list(word.encode())
    tops = [{"token": word, "logprob": -0.25, "bytes": raw}]
    tops += [{"token": f"alt{i}", "logprob": -2.0 - i, "bytes": list(b"alt")} for i in range(top)]
    return {"token": word, "logprob": -0.25, "bytes": raw, "top_logprobs": tops[:top]}


def _tool_calls(body: dict[str, Any], digest: str) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice", "auto")
    role, _ = _last_text(body.get("messages", []))
    if not tools or choice == "none" or role == "tool":
        return []
    calls = []
    for index, tool in enumerate(tools[:2]):
        name = tool.get("function", {}).get("name", "tool")
        arguments = json.dumps({"city": "Paris", "unit": "celsius", "call": index})
        calls.append(
            {
                "id": f"chatcmpl-tool-{digest}{index}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return calls if body.get("parallel_tool_calls", True) else calls[:1]


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    prompt_tokens = len(json.dumps(body.get("messages", body.get("prompt", ""))).split())
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
    }


def _refuses(body: dict[str, Any]) -> bool:
    return "forbidden" in _last_text(body.get("messages", []))[1]


def _chat_choice(body: dict[str, Any], index: int, digest: str) -> tuple[dict[str, Any], int]:
    calls = _tool_calls(body, digest)
    words, finish = _answer_words(body, index)
    message: dict[str, Any] = {"role": "assistant", "reasoning_content": None, "tool_calls": []}
    logprobs = None
    if calls:
        message.update(content=None, tool_calls=calls)
        finish, count = "tool_calls", 7 * len(calls)
    elif _refuses(body):
        message.update(content=None, refusal="I can't help with that.")
        count = 6
    else:
        message["content"] = "".join(words)
        count = len(words)
        if body.get("logprobs"):
            top = body.get("top_logprobs") or 0
            logprobs = {"content": [_token_logprob(w, top) for w in words]}
    choice = {
        "index": index,
        "message": message,
        "logprobs": logprobs,
        "finish_reason": finish,
        "stop_reason": None,
    }
    return choice, count


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    digest = _digest(body.get("model"), body.get("messages"), body.get("tools"))
    choices, tokens = [], 0
    for index in range(body.get("n") or 1):
        choice, count = _chat_choice(body, index, digest)
        choices.append(choice)
        tokens += count
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": CREATED,
        "model": body["model"],
        "choices": choices,
        "usage": _usage(body, tokens),
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }
    if body.get("seed") is not None:
        answer["system_fingerprint"] = f"fp_{body['seed']}"
    return answer


def _text_choice(body: dict[str, Any], index: int) -> tuple[dict[str, Any], int]:
    words, finish = _answer_words(body, index)
    text = "".join(words)
    if body.get("echo"):
        text = str(body.get("prompt", "")) + text
    logprobs = None
    if body.get("logprobs") is not None:
        top = body["logprobs"]
        offsets = [sum(len(w) for w in words[:i]) for i in range(len(words))]
        logprobs = {
            "text_offset": offsets,
            "token_logprobs": [-0.25] * len(words),
            "tokens": words,
            "top_logprobs": [{w: -0.25, **{f"alt{i}": -2.0 - i for i in range(top)}} for w in words]
            if top
            else None,
        }
    choice = {
        "index": index,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": finish,
        "stop_reason": None,
        "prompt_logprobs": None,
    }
    return choice, len(words)


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    digest = _digest(body.get("model"), body.get("prompt"))
    choices, tokens = [], 0
    for index in range(body.get("n") or 1):
        choice, count = _text_choice(body, index)
        choices.append(choice)
        tokens += count
    return {
        "id": f"cmpl-{digest}",
        "object": "text_completion",
        "created": CREATED,
        "model": body["model"],
        "choices": choices,
        "usage": _usage(body, tokens),
        "kv_transfer_params": None,
    }


def _vector(text: str, index: int, dimensions: int) -> list[float]:
    seed = sum(text.encode()) + index
    # Multiples of 1/8 survive float32 (base64) exactly: both encodings read the same.
    return [((seed * (i + 3)) % 17 - 8) / 8 for i in range(dimensions)]


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = body.get("dimensions") or 8
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(str(text), index, dimensions)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"index": index, "object": "embedding", "embedding": encoded})
    tokens = sum(len(str(t).split()) for t in inputs)
    return {
        "id": f"embd-{_digest(inputs)}",
        "object": "list",
        "created": CREATED,
        "model": body["model"],
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _chunk(answer: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    kind = "chat.completion.chunk" if answer["object"] == "chat.completion" else "text_completion"
    chunk = {
        "id": answer["id"],
        "object": kind,
        "created": CREATED,
        "model": answer["model"],
        "choices": choices,
    }
    if "system_fingerprint" in answer:
        chunk["system_fingerprint"] = answer["system_fingerprint"]
    return chunk


def _chat_deltas(choice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The stream of one chat choice, as vLLM sends it."""
    index, message = choice["index"], choice["message"]
    yield {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
    pieces: list[dict[str, Any]] = []
    for position, call in enumerate(message["tool_calls"]):
        head = {"index": position, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        pieces.append({"tool_calls": [head]})
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 9):
            part = {"index": position, "function": {"arguments": arguments[start : start + 9]}}
            pieces.append({"tool_calls": [part]})
    if message.get("refusal"):
        pieces.append({"refusal": message["refusal"]})
    content = message.get("content") or ""
    words = [w if i == 0 else " " + w for i, w in enumerate(content.split(" "))] if content else []
    logprobs = (choice.get("logprobs") or {}).get("content")
    for position, word in enumerate(words):
        delta: dict[str, Any] = {"content": word}
        if logprobs:
            delta["__logprobs__"] = {"content": [logprobs[position]]}
        pieces.append(delta)
    for position, delta in enumerate(pieces):
        logprob = delta.pop("__logprobs__", None)
        last = position == len(pieces) - 1
        yield {
            "index": index,
            "delta": delta,
            "logprobs": logprob,
            "finish_reason": choice["finish_reason"] if last else None,
        }


def _text_deltas(choice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    text = choice["text"]
    words = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
    for position, word in enumerate(words):
        last = position == len(words) - 1
        yield {
            "index": choice["index"],
            "text": word,
            "logprobs": None,
            "finish_reason": choice["finish_reason"] if last else None,
        }


async def _stream(answer: dict[str, Any], body: dict[str, Any]) -> AsyncIterator[bytes]:
    chat = answer["object"] == "chat.completion"
    streams = [list((_chat_deltas if chat else _text_deltas)(c)) for c in answer["choices"]]
    error_after = body.get("__error_after__")
    sent = 0
    for step in range(max(len(s) for s in streams)):
        for deltas in streams:
            if step < len(deltas):
                if error_after is not None and sent == error_after:
                    message = "the engine failed mid-stream"
                    yield _sse(
                        {
                            "error": {
                                "message": message,
                                "type": "InternalServerError",
                                "param": None,
                                "code": 500,
                            }
                        }
                    )
                    return
                yield _sse(_chunk(answer, [deltas[step]]))
                sent += 1
    options = body.get("stream_options") or {}
    if options.get("include_usage"):
        yield _sse({**_chunk(answer, []), "usage": answer["usage"]})
    if not body.get("__no_done__"):
        yield b"data: [DONE]\n\n"


async def _fault(request: Request, body: dict[str, Any], server: OpenAIServer) -> Response | None:
    """Failures chosen by ``x-test-*`` request headers."""
    headers = request.headers
    if "x-test-delay" in headers:
        await asyncio.sleep(float(headers["x-test-delay"]))
    status = headers.get("x-test-status")
    if status is not None:
        key = headers.get("x-test-fail-key")
        if key is not None:
            with server.lock:
                failed = server.failures.get(key, 0)
                server.failures[key] = failed + 1
            if failed >= int(headers.get("x-test-fail-times", "1")):
                return None
        code = int(status)
        response = _error(code, f"injected failure {code}", "InjectedError", code)
        if headers.get("x-test-retry-after"):
            response.headers["retry-after"] = headers["x-test-retry-after"]
        return response
    if "x-test-redirect" in headers:
        return Response(status_code=302, headers={"location": "http://elsewhere.invalid/v1/"})
    if "x-test-gzip-bomb" in headers:
        size = int(headers["x-test-gzip-bomb"])
        bomb = gzip.compress(b'{"pad": "' + b" " * size + b'"}', compresslevel=1)
        return Response(bomb, headers={"content-encoding": "gzip"}, media_type="application/json")
    if "x-test-json-error-on-stream" in headers:
        return _error(200, "the prompt is too long for this model", "BadRequestError", 400)
    if "x-test-long-line" in headers:
        return StreamingResponse(
            _long_line(int(headers["x-test-long-line"])), media_type="text/event-stream"
        )
    if "x-test-keepalive" in headers:
        return StreamingResponse(
            _keepalive(int(headers["x-test-keepalive"])), media_type="text/event-stream"
        )
    if "x-test-slow-data" in headers:
        return StreamingResponse(
            _slow_data(int(headers["x-test-slow-data"])), media_type="text/event-stream"
        )
    return None


async def _long_line(size: int) -> AsyncIterator[bytes]:
    yield b"data: "
    piece = b"a" * 65536
    for _ in range(size // len(piece)):
        yield piece


async def _keepalive(count: int) -> AsyncIterator[bytes]:
    yield _sse(
        {
            "id": "k",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}],
        }
    )
    for _ in range(count):
        await asyncio.sleep(0.05)
        yield b": keep-alive\n\n"


async def _slow_data(count: int) -> AsyncIterator[bytes]:
    for index in range(count):
        delta = {"content": f" word{index}"}
        yield _sse(
            {
                "id": "s",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta}],
            }
        )
        await asyncio.sleep(0.05)


async def _encoded_stream(
    request: Request, answer: dict[str, Any], body: dict[str, Any]
) -> Response:
    """The stream as sent, or, with ``x-test-crlf`` / ``x-test-gzip-stream``, with CRLF line
    ends in odd-sized pieces / gzip-encoded (both legal, both rarer than vLLM's plain LF)."""
    headers = request.headers
    if "x-test-crlf" not in headers and "x-test-gzip-stream" not in headers:
        return StreamingResponse(_stream(answer, body), media_type="text/event-stream")
    whole = b"".join([piece async for piece in _stream(answer, body)])
    if "x-test-crlf" in headers:
        whole = whole.replace(b"\n", b"\r\n")

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(whole), 7):  # CR and LF often land in different reads
                yield whole[start : start + 7]

        return StreamingResponse(pieces(), media_type="text/event-stream")
    encoded = gzip.compress(whole)
    return Response(encoded, headers={"content-encoding": "gzip"}, media_type="text/event-stream")


def _validate(body: dict[str, Any]) -> Response | None:
    model = body.get("model")
    if model not in MODELS and model != EMBED_MODEL:
        message = f"The model `{model}` does not exist."
        return _error(404, message, "NotFoundError", "model_not_found", "model")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        message = f"temperature must be between 0 and 2, got {temperature}"
        return _error(400, message, "BadRequestError", "invalid_value", "temperature")
    return None


def create_app(server: OpenAIServer, *, serve_retrieve: bool = True) -> Starlette:
    async def record(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        with server.lock:
            server.received.append(
                Received(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )
        return body if isinstance(body, dict) else {}

    def headers_for(request: Request) -> dict[str, str]:
        # vLLM answers with the request id it was given (or one of its own).
        return {
            "x-request-id": request.headers.get("x-request-id") or "vllm-" + _digest(id(request))
        }

    async def generate(request: Request) -> Response:
        body = await record(request)
        response = await _fault(request, body, server) or _validate(body)
        if response is None:
            if "x-test-error-event-after" in request.headers:
                body["__error_after__"] = int(request.headers["x-test-error-event-after"])
            if "x-test-no-done" in request.headers:
                body["__no_done__"] = True
            path = request.url.path
            if path.endswith("/embeddings"):
                response = JSONResponse(_embeddings(body))
            else:
                answer = _chat(body) if path.endswith("/chat/completions") else _completion(body)
                if body.get("stream"):
                    response = await _encoded_stream(request, answer, body)
                else:
                    response = JSONResponse(answer)
        response.headers.update(headers_for(request))
        return response

    def card(model: str) -> dict[str, Any]:
        return {
            "id": model,
            "object": "model",
            "created": CREATED,
            "owned_by": "vllm",
            "root": MODEL,
            "parent": None if model == MODEL else MODEL,
            "max_model_len": 4096,
        }

    async def models(request: Request) -> Response:
        await record(request)
        data = [card(m) for m in [*MODELS, EMBED_MODEL]]
        return JSONResponse({"object": "list", "data": data}, headers=headers_for(request))

    async def model(request: Request) -> Response:
        await record(request)
        name = request.path_params["name"]
        if name not in [*MODELS, EMBED_MODEL]:
            missing = f"The model `{name}` does not exist."
            response = _error(404, missing, "NotFoundError", "model_not_found", "model")
        else:
            response = JSONResponse(card(name))
        response.headers.update(headers_for(request))
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("404 page not found", 404)

    routes = [
        Route("/v1/chat/completions", generate, methods=["POST"]),
        Route("/v1/completions", generate, methods=["POST"]),
        Route("/v1/embeddings", generate, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
    if serve_retrieve:
        routes.append(Route("/v1/models/{name:path}", model, methods=["GET"]))
    app = Starlette(routes=routes)
    app.add_exception_handler(404, not_found)
    return app


@contextmanager
def openai_server(*, serve_retrieve: bool = True) -> Iterator[OpenAIServer]:
    """Serve the test server on 127.0.0.1 in a background thread while the block runs."""
    server = OpenAIServer()
    with sim.serving(create_app(server, serve_retrieve=serve_retrieve)) as url:
        server.url = url
        yield server
