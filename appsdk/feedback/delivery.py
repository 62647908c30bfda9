"""What each answer of Langfuse's scores API means for the ratings sent, and when to retry.

Every status is classified; nothing is refused for good unless resending it as it is can
never succeed:

========================  ===================================================================
answer                    what happens to the ratings of the request
========================  ===================================================================
202 (any 2xx but 207)     delivered
207                       some refused, counted but not named: split until each is known
400, 422                  the request is malformed: split until each rating is alone; a single
                          one is rejected, kept with Langfuse's reason
401, 403                  these keys may not write scores: rejected, kept with the reason
413                       too large: split down to single ratings; a single one is rejected
408, 429, 5xx             retried with capped, jittered backoff; ``Retry-After`` is honoured
404, 3xx                  a proxy, a deploy or a wrong URL: retried with backoff, never
                          followed, and a one-time warning names where it pointed
any other status          retried with backoff, with a one-time warning
network error, timeout    retried with backoff
========================  ===================================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import httpx

from appsdk.backoff import capped_delay, retry_after_s
from appsdk.errors import safe_url

__all__ = ["MAX_RETRY_AFTER_S", "Verdict", "backoff_delay", "classify", "partial_verdict"]

Action = Literal["delivered", "partial", "split", "reject", "retry"]

MAX_RETRY_AFTER_S = 300.0
"""A ``Retry-After`` longer than this is cut to it: a rating should not wait for hours."""
_PERMANENT = {400: "malformed request", 422: "invalid score"}


@dataclass(frozen=True)
class Verdict:
    """What to do with the ratings of one request, and why.

    Attributes:
        warning: a message to log once per client and ``warn_key`` (a misrouted URL, an
            unknown status), never containing credentials.
    """

    action: Action
    reason: str
    retry_after: float | None = None
    warning: str | None = None
    warn_key: str | None = None


def _detail(response: httpx.Response) -> str:
    return " ".join(response.text[:300].split())


def classify(response: httpx.Response, *, batch: int) -> Verdict:
    """The verdict on ``response`` to a POST of ``batch`` ratings."""
    status = response.status_code
    reason = f"HTTP {status}"
    retry_after = retry_after_s(response.headers.get("retry-after"))
    if status == 207:
        return Verdict("partial", reason)
    if 200 <= status < 300:
        return Verdict("delivered", reason)
    if status in _PERMANENT:
        if batch > 1:
            return Verdict("split", f"{reason} ({_PERMANENT[status]}); finding which rating")
        return Verdict("reject", f"{reason} ({_PERMANENT[status]}): {_detail(response)}")
    if status in (401, 403):
        return Verdict(
            "reject",
            f"{reason}: Langfuse refused these keys for writing scores: {_detail(response)}",
            warning=(
                f"appsdk: Langfuse refused the feedback credentials (HTTP {status}); the ratings"
                " are kept as rejected in the outbox. Check LANGFUSE_PUBLIC_KEY and"
                " LANGFUSE_SECRET_KEY."
            ),
            warn_key="auth",
        )
    if status == 413:
        if batch > 1:
            return Verdict("split", f"{reason} (batch too large); splitting it")
        return Verdict("reject", f"{reason}: a single rating is too large for Langfuse")
    if status in (408, 429) or status >= 500:
        return Verdict("retry", reason, retry_after)
    if 300 <= status < 400:
        where = safe_url(response.headers.get("location", "")) or "(no Location)"
        return Verdict(
            "retry",
            f"{reason} redirect to {where}",
            retry_after,
            warning=(
                f"appsdk: the Langfuse scores API at {safe_url(str(response.request.url))} "
                f"answered HTTP {status}, redirecting to {where}; appsdk does not follow "
                "redirects with credentials and keeps retrying. If Langfuse moved, set "
                "LANGFUSE_BASE_URL to its new address."
            ),
            warn_key="redirect",
        )
    if status == 404:
        return Verdict(
            "retry",
            reason,
            retry_after,
            warning=(
                f"appsdk: the Langfuse scores API at {safe_url(str(response.request.url))} "
                "answered HTTP 404; feedback stays in the outbox and is retried (a deploy or "
                "a proxy may be in the way). If it persists, check LANGFUSE_BASE_URL."
            ),
            warn_key="404",
        )
    return Verdict(
        "retry",
        reason,
        retry_after,
        warning=(
            f"appsdk: the Langfuse scores API answered HTTP {status}, which appsdk does not "
            "expect; feedback stays in the outbox and is retried."
        ),
        warn_key=f"status-{status}",
    )


def partial_verdict(response: httpx.Response, batch: int) -> Verdict:
    """207: Langfuse took some items of the batch and says how many, not which.

    Its answer is ``{"accepted": n, "rejected": m, "errors": [{"message": ...}]}``. For a
    single item that is exact. A batch is split to learn which were refused; the ones already
    accepted upsert when resent (same id and timestamp), so none shows twice.
    """
    try:
        body = response.json()
        rejected = int(body.get("rejected", 0))
        errors = [str(e.get("message", "")) for e in body.get("errors", [])]
    except (ValueError, AttributeError, TypeError):
        rejected, errors = batch, []
    if rejected == 0:
        return Verdict("delivered", "HTTP 207, none rejected")
    if batch == 1:
        reason = "; ".join(errors) or "rejected without a message"
        return Verdict("reject", f"rejected by Langfuse: {reason}")
    return Verdict("split", f"HTTP 207: {rejected} of {batch} rejected; finding which")


def backoff_delay(
    attempts: int, base_s: float, max_s: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after ``attempts`` failures: exponential up to ``max_s``, jittered.

    The exponent is capped, so any number of failures gives a finite wait of at least
    ``max_s / 2`` once the ceiling is reached. A ``Retry-After`` is a floor (cut to
    :data:`MAX_RETRY_AFTER_S`), with a little jitter so that clients do not return together.
    """
    if retry_after is not None:
        floor = min(retry_after, MAX_RETRY_AFTER_S)
        return floor + random.uniform(0.0, base_s)
    return capped_delay(attempts, base_s, max_s) * random.uniform(0.5, 1.0)
