"""Signed, expiring feedback tokens: only the user who got an answer can rate it.

The app returns a token with each answer; the feedback endpoint accepts a rating only with a
valid token, and takes the trace (and user) from the token, never from the request. Tokens are
HMAC-signed by itsdangerous with the keys of the ``feedback_secret`` setting
(``APPSDK_FEEDBACK_SECRET``; comma-separated, newest last: it signs, all of them verify, so
keys rotate without breaking issued tokens).
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

from appsdk.config import FEEDBACK_KEY_MIN_CHARS, settings_in_force
from appsdk.errors import AppSDKError, ConfigError
from appsdk.feedback.model import check_ids

__all__ = [
    "ExpiredFeedbackToken",
    "FeedbackGrant",
    "FeedbackTokenError",
    "ForbiddenFeedbackToken",
    "InvalidFeedbackToken",
    "check_secret",
    "issue_feedback_token",
    "verify_feedback_token",
]

_SALT = "appsdk.feedback.v1"
DEFAULT_TTL_S = 7 * 24 * 3600
# What URLSafeSerializer writes: an optional "." (compressed), the payload, ".", the signature,
# all in the URL-safe base64 alphabet without padding.
_TOKEN_SHAPE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class FeedbackTokenError(AppSDKError):
    """A feedback token was refused."""

    status = 401


class InvalidFeedbackToken(FeedbackTokenError):
    """Not a token we signed (forged, altered, truncated, or signed with an unknown key)."""


class ExpiredFeedbackToken(FeedbackTokenError):
    """The token's lifetime is over."""


class ForbiddenFeedbackToken(FeedbackTokenError):
    """The token belongs to another user."""

    status = 403


@dataclass(frozen=True)
class FeedbackGrant:
    """What a valid token allows: rating this trace (and observation), as this user."""

    trace_id: str
    observation_id: str | None
    user_id: str | None
    expires_at: int


def _keys(secret: str | list[str] | None) -> list[str]:
    if secret is None:
        keys = settings_in_force("feedback_secret").feedback_keys
    else:
        keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys or any(len(k) < FEEDBACK_KEY_MIN_CHARS for k in keys):
        raise ConfigError(
            "APPSDK_FEEDBACK_SECRET",
            f"is not set, or a key is shorter than {FEEDBACK_KEY_MIN_CHARS} characters",
            "set it to one or more random keys, comma-separated, newest last "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )
    return keys


def check_secret(secret: str | list[str] | None = None) -> None:
    """Raise ConfigError now if no usable signing key is configured (e.g. when an app starts)."""
    _keys(secret)


def _serializer(secret: str | list[str] | None) -> URLSafeSerializer:
    return URLSafeSerializer(_keys(secret), salt=_SALT)


def issue_feedback_token(
    trace_id: str,
    observation_id: str | None = None,
    user_id: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    *,
    secret: str | list[str] | None = None,
) -> str:
    """A compact signed token for rating ``trace_id`` (as ``user_id``) within ``ttl_s``.

    Raises:
        ConfigError: no signing key is configured.
        ValueError: an id is malformed or the all-zero id of no trace (named in the message).
    """
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    check_ids(trace_id, observation_id)  # a token for no trace would score nothing real
    payload = [trace_id, observation_id, user_id, int(time.time()) + int(ttl_s)]
    token: str = _serializer(secret).dumps(payload)
    return token


def _canonical(token: str) -> bool:
    """Whether ``token`` is spelled exactly as we issue it.

    itsdangerous decodes the signature leniently: base64 skips characters outside its
    alphabet and ignores padding and the spare bits of the last character, so ``token +
    "!!!!"`` or a changed last character can verify as the same token. One token must have
    one spelling (whatever keys on it, such as a rate limit, must not be dodged).
    """
    if not _TOKEN_SHAPE.fullmatch(token):
        return False
    signature = token.rsplit(".", 1)[1]
    try:
        return base64_encode(base64_decode(signature)).decode() == signature
    except BadData:
        return False


def verify_feedback_token(
    token: str, *, user_id: str | None = None, secret: str | list[str] | None = None
) -> FeedbackGrant:
    """Check a token: signature (constant time), expiry, and that it is ``user_id``'s.

    Raises:
        InvalidFeedbackToken, ExpiredFeedbackToken, ForbiddenFeedbackToken.
    """
    serializer = _serializer(secret)  # a missing key is a ConfigError, whatever the token
    if not _canonical(token):
        raise InvalidFeedbackToken("the feedback token is not valid")
    try:
        payload: Any = serializer.loads(token)
    except BadSignature:
        raise InvalidFeedbackToken("the feedback token is not valid") from None
    if not (isinstance(payload, list) and len(payload) == 4 and isinstance(payload[3], int)):
        raise InvalidFeedbackToken("the feedback token is not valid")
    trace_id, observation_id, token_user, expires_at = payload
    if expires_at < time.time():
        raise ExpiredFeedbackToken("the feedback token has expired")
    if token_user is not None and not hmac.compare_digest(
        str(token_user).encode(), str(user_id or "").encode()
    ):
        raise ForbiddenFeedbackToken("the feedback token belongs to another user")
    return FeedbackGrant(str(trace_id), observation_id, token_user, expires_at)
