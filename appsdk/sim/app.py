"""An llm-d gateway + vLLM simulator: OpenAI-compatible endpoints on Starlette.

It answers like the real stack: vLLM's JSON (and SSE) bodies, usage only when
``stream_options.include_usage`` is sent, ids from ``x-request-id``, session tokens, and the
endpoint picker's plain-text errors with ``x-llm-d-request-dropped-reason``. Request headers
choose failures (``x-sim-*``, see :class:`SimConfig`), and the received headers are recorded
so tests can assert what the gateway saw. Spans named like the gateway's (``gateway.request``)
and vLLM's (``llm_request``) continue the caller's trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from appsdk.sim.models import MODELS, served_name
from appsdk.sim.tracing import SimTracing

__all__ = ["ReceivedRequest", "SimConfig", "create_app"]


_PICKER_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    412: "FailedPrecondition",
    429: "ResourceExhausted",
    500: "Internal",
    503: "ServiceUnavailable",
}
_VLLM_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


@dataclass
class SimConfig:
    """Default behaviour; each request may override it with headers.

    ``x-sim-status``: answer with this error status. ``x-sim-error-shape``: ``json`` (vLLM),
    ``flat`` (older vLLM), ``picker`` (the endpoint picker's plain text).
    ``x-sim-dropped-reason``, ``x-sim-retry-after``: headers of a picker rejection.
    ``x-sim-fail-times``: fail only the first N attempts of one ``x-request-id``.
    ``x-sim-stream-error-after``: an SSE error event after N chunks.
    ``x-sim-ttft-ms``, ``x-sim-itl-ms``: time to first token and between tokens.
    ``x-sim-garbage``: ``json`` (an unparsable body) or ``sse`` (a malformed event).
    ``x-sim-reset-after``: drop the connection after N streamed chunks.
    ``x-sim-pad-bytes``: add N bytes of padding to a JSON answer.
    """

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    completion_tokens: int = 12
    queue_ms: float = 0.0


@dataclass
class ReceivedRequest:
    """What the gateway received: path, headers (lowercase names), JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _State:
    config: SimConfig
    tracing: SimTracing
    received: list[ReceivedRequest] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _words(messages: Any) -> list[str]:
    if isinstance(messages, str):
        return messages.split()
    words: list[str] = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words.extend(content.split())
    return words


def _answer_tokens(prompt_words: list[str], count: int) -> list[str]:
    topic = " ".join(prompt_words[-3:]) or "nothing"
    base = f"Simulated answer about {topic}: llm-d routed this request to a vLLM replica".split()
    return [(" " if i else "") + base[i % len(base)] for i in range(count)]


def _error_response(status: int, shape: str, message: str, headers: dict[str, str]) -> Response:
    if shape == "picker":
        code = _PICKER_CODES.get(status, "Unknown")
        return PlainTextResponse(f"inference error: {code} - {message}", status, headers=headers)
    kind = _VLLM_TYPES.get(status, "InternalServerError")
    if shape == "flat":
        body: dict[str, Any] = {
            "object": "error",
            "message": message,
            "type": kind,
            "param": None,
            "code": status,
        }
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status, headers=headers)


def _injected_failure(request: Request, state: _State, request_id: str) -> Response | None:
    raw_status = request.headers.get("x-sim-status")
    if raw_status is None:
        return None
    fail_times = request.headers.get("x-sim-fail-times")
    if fail_times is not None:
        with state.lock:
            attempt = state.attempts.get(request_id, 0) + 1
            state.attempts[request_id] = attempt
        if attempt > int(fail_times):
            return None
    status = int(raw_status)
    headers = {}
    if "x-sim-dropped-reason" in request.headers:
        headers["x-llm-d-request-dropped-reason"] = request.headers["x-sim-dropped-reason"]
    if "x-sim-retry-after" in request.headers:
        headers["retry-after"] = request.headers["x-sim-retry-after"]
    shape = request.headers.get("x-sim-error-shape", "json")
    return _error_response(status, shape, f"simulated failure {status}", headers)


def create_app(config: SimConfig | None = None, tracing: SimTracing | None = None) -> Starlette:
    """The simulator as an ASGI app; :func:`appsdk.sim.running` serves it on loopback."""
    state = _State(config or SimConfig(), tracing or SimTracing(None))

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "llm-d-sim"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        return await _generate(request, state, chat=True)

    async def completions(request: Request) -> Response:
        return await _generate(request, state, chat=False)

    async def embeddings(request: Request) -> Response:
        body = await _record(request, state)
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append(
                {"object": "embedding", "index": index, "embedding": [b / 255 for b in digest[:8]]}
            )
        tokens = sum(len(str(t).split()) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", MODELS[2]),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )
    app.state.sim = state
    return app


async def _record(request: Request, state: _State) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    with state.lock:
        state.received.append(
            ReceivedRequest(
                request.url.path, {k.lower(): v for k, v in request.headers.items()}, body
            )
        )
    return body if isinstance(body, dict) else {}


async def _generate(request: Request, state: _State, *, chat: bool) -> Response:
    body = await _record(request, state)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    headers = {"x-request-id": request_id}
    session = request.headers.get("x-session-token") or f"sess-{uuid.uuid4().hex[:12]}"
    headers["x-session-token"] = session
    failure = _injected_failure(request, state, request_id)
    if failure is not None:
        failure.headers.update(headers)
        return failure
    model = str(body.get("model") or MODELS[0])
    if served_name(model) is None:
        return _error_response(404, "json", f"The model `{model}` does not exist.", headers)
    if request.headers.get("x-sim-garbage") == "json":
        return Response(b"{not json", 200, headers=headers, media_type="application/json")
    prompt_words = _words(body.get("messages") if chat else body.get("prompt"))
    count = int(body.get("max_tokens") or state.config.completion_tokens)
    tokens = _answer_tokens(prompt_words, max(1, min(count, state.config.completion_tokens)))
    timing = _Timing.from_request(request, state.config)
    span = state.tracing.start(request, request_id, model, body)
    prefix = "chatcmpl" if chat else "cmpl"
    response_id = f"{prefix}-{request_id}"
    usage = {
        "prompt_tokens": len(prompt_words),
        "completion_tokens": len(tokens),
        "total_tokens": len(prompt_words) + len(tokens),
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream_events(
            request, response_id, model, tokens, usage, include_usage, chat, timing, span, state
        )
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    await timing.wait_all(len(tokens))
    text = "".join(tokens)
    state.tracing.end(span, usage, timing)
    choice: dict[str, Any] = {
        "index": 0,
        "finish_reason": "length" if count <= len(tokens) else "stop",
        "stop_reason": None,
        "logprobs": None,
    }
    if chat:
        choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
    else:
        choice["text"] = text
    return JSONResponse(
        {
            "id": response_id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
            "prompt_logprobs": None,
            "kv_transfer_params": None,
            **_padding(request),
        },
        headers=headers,
    )


def _padding(request: Request) -> dict[str, str]:
    size = int(request.headers.get("x-sim-pad-bytes", "0"))
    return {"padding": "x" * size} if size else {}


class SimulatedReset(Exception):
    """Raised inside a stream so the server drops the connection, as a crashed pod would."""


@dataclass
class _Timing:
    ttft_s: float
    itl_s: float
    queue_s: float
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None

    @classmethod
    def from_request(cls, request: Request, config: SimConfig) -> _Timing:
        ttft = float(request.headers.get("x-sim-ttft-ms", config.ttft_ms))
        itl = float(request.headers.get("x-sim-itl-ms", config.itl_ms))
        return cls(ttft / 1000, itl / 1000, config.queue_ms / 1000)

    async def wait_first(self) -> None:
        if self.ttft_s:
            await asyncio.sleep(self.ttft_s)
        self.first_token = time.monotonic()

    async def wait_next(self) -> None:
        if self.itl_s:
            await asyncio.sleep(self.itl_s)

    async def wait_all(self, tokens: int) -> None:
        await self.wait_first()
        for _ in range(tokens - 1):
            await self.wait_next()


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


async def _stream_events(
    request: Request,
    response_id: str,
    model: str,
    tokens: list[str],
    usage: dict[str, Any],
    include_usage: bool,
    chat: bool,
    timing: _Timing,
    span: Any,
    state: _State,
) -> AsyncIterator[bytes]:
    error_after = request.headers.get("x-sim-stream-error-after")
    reset_after = request.headers.get("x-sim-reset-after")
    garbage = request.headers.get("x-sim-garbage") == "sse"
    base = {
        "id": response_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    try:
        await timing.wait_first()
        if chat:
            yield _sse(
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            )
        for index, token in enumerate(tokens):
            if error_after is not None and index == int(error_after):
                yield _sse(
                    {
                        "error": {
                            "message": "simulated failure mid-stream",
                            "type": "InternalServerError",
                            "code": 500,
                        }
                    }
                )
                return
            if reset_after is not None and index == int(reset_after):
                raise SimulatedReset("connection dropped mid-stream")
            if garbage and index == 1:
                yield b"data: {this is not json\n\n"
            last = index == len(tokens) - 1
            delta: dict[str, Any] = {"content": token} if chat else {}
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            choice.update({"delta": delta} if chat else {"text": token})
            yield _sse({**base, "choices": [choice]})
            if not last:
                await timing.wait_next()
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage})
        yield _sse("[DONE]")
    finally:
        state.tracing.end(span, usage, timing)
