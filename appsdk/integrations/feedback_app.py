"""``POST /feedback`` as a Starlette app, mountable in FastAPI.

Takes ``{token, name, value, comment}`` as ``application/json``; the trace, observation and
user come from the signed token, never from the body. Answers: 202 stored, 400 malformed
(not JSON, nested too deep) or with field errors, 401 bad or expired token, 403 another
user's token, 413 body too large, 415 not ``application/json``, 429 too many ratings for one
answer (one trace and user, however many tokens or spellings), 503 if the outbox cannot
store. Bad input never gets a 500.

Only ``application/json`` is taken because a browser sends ``text/plain`` (and form bodies)
cross-site without asking the server first (a CORS "simple request"); a JSON body needs a
preflight the app's CORS policy decides on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from appsdk.feedback.client import FeedbackClient, FeedbackValidationError, default_client
from appsdk.feedback.tokens import (
    FeedbackGrant,
    FeedbackTokenError,
    check_secret,
    verify_feedback_token,
)

__all__ = ["feedback_app"]

_log = logging.getLogger("appsdk")
_FIELDS = {"token", "name", "value", "comment"}
MAX_JSON_DEPTH = 16
"""A feedback body is a flat object; anything nested deeper is refused before parsing."""
# A JSON string (escapes included) and the brackets outside strings; possessive, so a long
# or unterminated string costs linear time.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays or objects more than ``limit`` deep.

    Checked before ``json.loads``, whose recursion a deeply nested 10 KB body exhausts.
    """
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", raw)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _is_json(content_type: str | None) -> bool:
    """``application/json``, optionally with ``charset=utf-8`` (JSON is UTF-8 by RFC 8259)."""
    if not content_type:
        return False
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    if media != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


class _RateLimiter:
    """At most ``limit`` ratings per answer (trace and user) in a sliding minute.

    Keyed on the verified grant, never on the token's spelling: two tokens for the same
    answer share one budget. Memory is bounded (the least recently seen keys are dropped).
    """

    def __init__(self, limit: int, window_s: float = 60.0, max_tokens: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_tokens = max_tokens
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, grant: FeedbackGrant) -> bool:
        identity = "\x1f".join((grant.trace_id, grant.user_id or ""))
        key = hashlib.sha256(identity.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hits = self._seen.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            self._seen[key] = hits
            while len(self._seen) > self.max_tokens:
                self._seen.popitem(last=False)
        return allowed


def _error(status: int, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    return JSONResponse(body, status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _fields(payload: Any) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    if not isinstance(payload, dict):
        return None, [{"field": "body", "message": "must be a JSON object"}]
    problems = [
        {"field": key, "message": "is not a feedback field"}
        for key in payload
        if key not in _FIELDS
    ]
    if not isinstance(payload.get("token"), str) or not payload.get("token"):
        problems.append({"field": "token", "message": "is required (the token from the answer)"})
    if "name" not in payload:
        problems.append({"field": "name", "message": "is required"})
    if "value" not in payload:
        problems.append({"field": "value", "message": "is required"})
    return (payload if not problems else None), problems


def feedback_app(
    *,
    client: FeedbackClient | None = None,
    secret: str | list[str] | None = None,
    user_id: Callable[[Request], str | None] | None = None,
    max_body_bytes: int = 16_384,
    ratings_per_minute: int = 30,
) -> Starlette:
    """The feedback endpoint.

    Args:
        client: where ratings go (default: the process's :class:`FeedbackClient`).
        secret: token keys (default ``APPSDK_FEEDBACK_SECRET``).
        user_id: who is rating, from the request (a session cookie, an auth header); a token
            issued for a user is refused for anyone else.
        max_body_bytes: larger bodies get 413.
        ratings_per_minute: per answer (a trace and user, whichever token); more get 429.

    Raises:
        ConfigError: no signing key (``secret`` or ``APPSDK_FEEDBACK_SECRET``), or one shorter
            than 16 characters.

    Example:
        >>> api = feedback_app(user_id=lambda r: r.headers.get("x-user"))  # doctest: +SKIP
        >>> app.mount("/api", api)  # doctest: +SKIP
    """
    # A missing or short key is found when the app is built, not at the first rating (a 500).
    check_secret(secret)
    limiter = _RateLimiter(ratings_per_minute)

    async def post_feedback(request: Request) -> JSONResponse:
        if not _is_json(request.headers.get("content-type")):
            return _error(415, "send the rating as application/json")
        try:
            raw = await _read_body(request, max_body_bytes)
        except ClientDisconnect:
            return _error(400, "the client went away before sending the body")
        if raw is None:
            return _error(413, f"the body is larger than {max_body_bytes} bytes")
        if _too_deep(raw, MAX_JSON_DEPTH):
            return _error(
                400, "the body is nested too deeply", [{"field": "body", "message": "too deep"}]
            )
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return _error(400, "the body is not JSON", [{"field": "body", "message": "not JSON"}])
        fields, problems = _fields(payload)
        if fields is None:
            return _error(400, "invalid feedback", problems)
        who = user_id(request) if user_id is not None else None
        try:
            grant = verify_feedback_token(fields["token"], user_id=who, secret=secret)
        except FeedbackTokenError as exc:
            return _error(exc.status, str(exc))
        if not limiter.allow(grant):
            return _error(429, f"at most {ratings_per_minute} ratings a minute per answer")
        try:
            score = (client or default_client()).submit(
                trace_id=grant.trace_id,
                observation_id=grant.observation_id,
                user_id=grant.user_id,
                name=fields["name"],
                value=fields["value"],
                comment=fields.get("comment"),
            )
        except FeedbackValidationError as exc:
            return _error(400, "invalid feedback", exc.errors)
        except Exception:  # storage failed: the rating was not kept, say so (not a 500)
            _log.warning("appsdk: could not store feedback", exc_info=True)
            return _error(503, "feedback storage is unavailable; try again")
        return JSONResponse({"id": score}, 202)

    return Starlette(routes=[Route("/feedback", post_feedback, methods=["POST"])])
