"""``FeedbackClient``: feedback into the durable outbox, then to Langfuse in the background.

Delivery POSTs batches to Langfuse's scores API and reads every answer: 202 delivered; 207
(some refused, counts but no ids) resolved by resending that batch item by item; 429/5xx and
network errors retried with backoff (honouring Retry-After); an item Langfuse refuses kept
with the reason and not retried; a batch refused as a whole split the same way. Without
Langfuse, feedback goes to the local trace store and shows in ``appsdk traces show``.
"""

from __future__ import annotations

import base64
import datetime
import logging
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from appsdk import pipeline as _pipeline
from appsdk.config import Settings, load_settings
from appsdk.errors import AppSDKError
from appsdk.feedback.model import Feedback
from appsdk.feedback.outbox import Outbox, OutboxItem
from appsdk.llmd.errors import retry_after_seconds
from appsdk.policy import CaptureMode, Policy, PolicyEngine

if TYPE_CHECKING:
    from appsdk.store.db import TraceStore

__all__ = ["FeedbackClient", "FeedbackValidationError"]

_log = logging.getLogger("appsdk")
DEFAULT_OUTBOX = Path(".appsdk/feedback.db")


class FeedbackValidationError(AppSDKError, ValueError):
    """The feedback does not validate; ``errors`` names each field and the problem.

    Attributes:
        errors: ``[{"field": "trace_id", "message": "..."}]``.
    """

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        super().__init__(f"invalid feedback: {detail}")

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> FeedbackValidationError:
        return cls(
            [
                {
                    "field": ".".join(str(p) for p in e["loc"]) or "feedback",
                    "message": e["msg"].removeprefix("Value error, "),
                }
                for e in exc.errors()
            ]
        )


class FeedbackClient:
    """Submit end-user feedback without ever losing it.

    Args:
        settings: where Langfuse is (default: the configured pipeline's, else the environment).
        outbox_path: the SQLite outbox (default ``APPSDK_FEEDBACK_OUTBOX`` or
            ``.appsdk/feedback.db``).
        policy: governs comments (default: the configured pipeline's policy).
        backoff_s: first and longest wait between delivery attempts while Langfuse is down.
        start: start the background delivery (tests may deliver by hand with ``deliver_once``).

    Example:
        >>> feedback = FeedbackClient()  # doctest: +SKIP
        >>> feedback.submit(trace_id=trace_id, name="helpful", value=True)
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        outbox_path: str | Path | None = None,
        policy: Policy | None = None,
        batch_size: int = 50,
        timeout_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.2, 60.0),
        start: bool = True,
    ) -> None:
        pipeline = _pipeline.current()
        self.settings = settings or (pipeline.settings if pipeline is not None else load_settings())
        engine = (
            policy.engine
            if policy is not None
            else (pipeline.engine if pipeline is not None else Policy.from_env().engine)
        )
        self._engine: PolicyEngine = engine
        self._batch_size = batch_size
        self._backoff_base, self._backoff_max = backoff_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._warned_auth = False
        self._singles: set[str] = set()
        self._worker: threading.Thread | None = None
        self._store: TraceStore | None = None
        if not self.settings.langfuse_enabled:
            self.outbox: Outbox | None = None
            return
        import os

        path = outbox_path or os.environ.get("APPSDK_FEEDBACK_OUTBOX") or DEFAULT_OUTBOX
        self.outbox = Outbox(path, destination=self.settings.langfuse_destination())
        assert self.settings.langfuse_public_key and self.settings.langfuse_secret_key
        credentials = (
            f"{self.settings.langfuse_public_key}:"
            f"{self.settings.langfuse_secret_key.get_secret_value()}"
        )
        self._http = httpx.Client(
            base_url=self.settings.langfuse_url,
            timeout=timeout_s,
            headers={"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
        )
        if start:
            self._worker = threading.Thread(target=self._run, name="appsdk-feedback", daemon=True)
            self._worker.start()

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, feedback: Feedback | None = None, /, **fields: Any) -> str:
        """Store one rating durably and return its score id (the same id for a resubmission).

        Raises:
            FeedbackValidationError: a field is missing or invalid (each one is named).
        """
        if feedback is None:
            try:
                feedback = Feedback(**fields)
            except ValidationError as exc:
                raise FeedbackValidationError.from_pydantic(exc) from None
        payload = _safe_score(feedback, self._engine, datetime.datetime.now(datetime.UTC))
        if self.settings.environment:
            payload["environment"] = self.settings.environment
        if self.outbox is None:
            self._to_local_store(feedback, payload)
        else:
            self.outbox.put(feedback.id, payload)
            self._wake.set()
        return feedback.id

    def _to_local_store(self, feedback: Feedback, payload: Mapping[str, Any]) -> None:
        from appsdk.store.db import ScoreRecord, TraceStore

        if self._store is None:  # opened once, on the first rating
            self._store = TraceStore(self.settings.store_path)
        self._store.write_score(
            ScoreRecord(
                id=feedback.id,
                trace_id=feedback.trace_id,
                observation_id=feedback.observation_id,
                name=payload["name"],
                value=feedback.value if isinstance(feedback.value, bool) else payload["value"],
                data_type=str(feedback.data_type),
                comment=payload.get("comment"),
                created_ns=time.time_ns(),
            )
        )

    # -- delivering ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_once()
            except Exception:  # the worker must survive anything and try again later
                _log.warning("appsdk: feedback delivery failed unexpectedly", exc_info=True)
                sent = 0
            with self._progress:
                self._progress.notify_all()
            if sent:
                continue
            assert self.outbox is not None
            wait = self.outbox.next_due_in()
            self._wake.wait(5.0 if wait is None else min(wait, 5.0))
            self._wake.clear()

    def deliver_once(self) -> int:
        """Send one batch of due items; returns how many were attempted."""
        if self.outbox is None:
            return 0
        items = self.outbox.due(self._batch_size)
        if not items:
            return 0
        singles = [i for i in items if i.id in self._singles]
        batch = singles[:1] if singles else [i for i in items if i.id not in self._singles]
        self._post(batch)
        return len(batch)

    def _post(self, items: list[OutboxItem]) -> None:
        assert self.outbox is not None
        ids = [i.id for i in items]
        try:
            response = self._http.post("/api/public/scores", json=[i.payload for i in items])
        except httpx.HTTPError as exc:
            self.outbox.retry_later(ids, type(exc).__name__, self._backoff(items, None))
            return
        status = response.status_code
        if status == 207:
            self._partial(items, response)
        elif 200 <= status < 300:
            self.outbox.delivered(ids)
            self._singles.difference_update(ids)
        elif status in (401, 403):
            if not self._warned_auth:
                self._warned_auth = True
                _log.warning(
                    "appsdk: Langfuse refused the feedback credentials (HTTP %d); "
                    "feedback stays in the outbox. Check LANGFUSE_PUBLIC_KEY and "
                    "LANGFUSE_SECRET_KEY.",
                    status,
                )
            self.outbox.retry_later(ids, f"HTTP {status}", 60.0)
        elif status == 429 or status >= 500:
            delay = retry_after_seconds(response.headers.get("retry-after"))
            self.outbox.retry_later(ids, f"HTTP {status}", self._backoff(items, delay))
        elif len(items) > 1:
            # Refused as a whole: send one by one to find the item at fault.
            self._singles.update(ids)
            self.outbox.retry_later(ids, f"HTTP {status}; retrying one by one", 0.0)
        else:
            self.outbox.rejected(ids, f"HTTP {status}: {response.text[:300]}")
            self._singles.difference_update(ids)

    def _partial(self, items: list[OutboxItem], response: httpx.Response) -> None:
        """207: Langfuse took some items of the batch and says how many, not which.

        Its answer is ``{"accepted": n, "rejected": m, "errors": [{"message": ...}]}``. For a
        single item that is exact. For a batch, the items are resent one by one to learn which
        were refused; the ones already accepted upsert (same id and timestamp), so none shows
        twice.
        """
        assert self.outbox is not None
        ids = [i.id for i in items]
        try:
            body = response.json()
            rejected = int(body.get("rejected", 0))
            errors = [str(e.get("message", "")) for e in body.get("errors", [])]
        except (ValueError, AttributeError, TypeError):
            rejected, errors = len(items), []
        if rejected == 0:
            self.outbox.delivered(ids)
            self._singles.difference_update(ids)
        elif len(items) == 1:
            reason = "; ".join(errors) or "rejected without a message"
            self.outbox.rejected(ids, f"rejected by Langfuse: {reason}")
            self._singles.difference_update(ids)
        else:
            self._singles.update(ids)
            self.outbox.retry_later(ids, f"{rejected} of {len(items)} rejected", 0.0)

    def _backoff(self, items: list[OutboxItem], retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, 300.0)
        attempts: int = max(i.attempts for i in items)
        ceiling = min(self._backoff_max, self._backoff_base * 2.0**attempts)
        return ceiling * random.uniform(0.5, 1.0)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is pending (delivered or rejected); False at the deadline."""
        if self.outbox is None:
            return True
        deadline = time.monotonic() + timeout_s
        while self.outbox.counts()["pending"]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._worker is None:
                self.deliver_once()
                continue
            with self._progress:
                self._wake.set()
                self._progress.wait(min(remaining, 1.0))
        return True

    def stats(self) -> dict[str, int]:
        """Outbox counts: pending, delivered, rejected."""
        return self.outbox.counts() if self.outbox is not None else {}

    def close(self) -> None:
        """Stop delivering; what is pending stays in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(5.0)
        if self.outbox is not None:
            self._http.close()
            self.outbox.close()
        if self._store is not None:
            self._store.close()


_default: FeedbackClient | None = None
_default_lock = threading.Lock()


def _safe_score(feedback: Feedback, policy: PolicyEngine, now: datetime.datetime) -> dict[str, Any]:
    """The score item under the policy: what users type is content, like any other.

    The comment follows the ``feedback`` mode; the score name, a text or categorical value and
    the session id are scrubbed like any text (pseudonymized as the policy says); metadata
    follows the ``metadata`` mode.
    """
    mode = policy.modes["feedback"]
    scrub = mode is not CaptureMode.FULL
    comment = policy.render("feedback", feedback.comment) if feedback.comment else None
    payload = feedback.to_score(now, comment)
    if scrub:
        payload["name"] = policy.redactor.redact_repeated(payload["name"])
        if isinstance(payload["value"], str):
            payload["value"] = policy.redactor.redact(payload["value"])
    if "sessionId" in payload:
        payload["sessionId"] = policy.identity(payload["sessionId"], "session")
    metadata = payload.pop("metadata", None)
    metadata_mode = policy.metadata_mode
    if metadata and metadata_mode is CaptureMode.METADATA:
        payload["metadata"] = {"described": policy.describe(metadata)}
    elif metadata and metadata_mode is not CaptureMode.NONE:
        payload["metadata"] = policy.prepare(metadata, metadata_mode is CaptureMode.REDACTED)
    return payload


def default_client() -> FeedbackClient:
    """The process's feedback client, bound to the configured pipeline on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FeedbackClient()
            pipeline = _pipeline.current()
            if pipeline is not None:
                pipeline.on_shutdown.append(_close_default)
        return _default


def _close_default() -> None:
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is not None:
        client.close()


def submit_feedback(feedback: Feedback | None = None, /, **fields: Any) -> str:
    """Submit one rating through the default :class:`FeedbackClient`; returns the score id."""
    return default_client().submit(feedback, **fields)
