"""``FeedbackClient``: feedback into the durable outbox, then to Langfuse in the background.

Delivery claims a batch of due ratings in the outbox (a lease, so processes sharing the file
never send the same rating twice in the normal case), POSTs it to Langfuse's scores API and
acts on the answer as :mod:`appsdk.feedback.delivery` classifies it: delivered; split until
each refused rating is known (207, 400, 422, 413); rejected and kept with the reason (what can
never succeed); or retried with capped, jittered backoff (everything that can succeed later,
redirects and 404s included). A delivery that succeeds makes every waiting rating due at
once. Without Langfuse, feedback goes to the local trace store and shows in
``appsdk traces show``.

The pipeline drives the process's default client through :func:`flush_default`,
:func:`shutdown_default` and :func:`start_default_if_pending`.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from appsdk import runtime as _runtime
from appsdk.batching import start_untraced
from appsdk.config import Settings, settings_in_force
from appsdk.errors import AppSDKError
from appsdk.feedback.delivery import Verdict, backoff_delay, classify, partial_verdict
from appsdk.feedback.model import Feedback
from appsdk.feedback.outbox import Outbox, OutboxItem, has_pending
from appsdk.policy import CaptureMode, Policy, PolicyEngine

if TYPE_CHECKING:
    from appsdk.store.db import TraceStore

__all__ = [
    "FeedbackClient",
    "FeedbackValidationError",
    "default_client",
    "flush_default",
    "shutdown_default",
    "start_default_if_pending",
    "stats_default",
    "submit_feedback",
]

_log = logging.getLogger("appsdk")
_SCORES = "/api/public/scores"
_IDLE_POLL_S = 5.0  # an idle worker looks again this often: other processes' rows, leases
_FLUSH_POLL_S = 0.5  # flush() looks again this often for rows other processes deliver
_MIN_WAIT_S = 0.01  # a row due "now" that cannot be claimed (clock skew) must not spin


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
        settings: where Langfuse is, and the outbox (default: the settings in force, the
            configured pipeline's, else the environment's).
        outbox_path: the SQLite outbox (default: the settings' ``feedback_outbox``,
            ``APPSDK_FEEDBACK_OUTBOX`` or ``.appsdk/feedback.db``).
        policy: governs comments (default: the configured pipeline's policy).
        batch_size: ratings per request at most.
        timeout_s: the longest one request to Langfuse may take (less near a deadline).
        backoff_s: first and longest wait between delivery attempts while Langfuse is down.
        lease_s: how long a claim on ratings being sent holds before another process may
            take them over (default: three request timeouts, at least 30 s); a claimer of
            this machine that died loses its claims at once.
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
        lease_s: float | None = None,
        start: bool = True,
    ) -> None:
        pipeline = _runtime.current()
        self.settings = settings or settings_in_force()
        engine = (
            policy.engine
            if policy is not None
            else (
                pipeline.engine
                if pipeline is not None
                else Policy.from_settings(self.settings).engine
            )
        )
        self._engine: PolicyEngine = engine
        self._batch_size = max(1, batch_size)
        self._timeout_s = timeout_s
        self._backoff_base, self._backoff_max = backoff_s
        self._lease_s = lease_s if lease_s is not None else max(30.0, 3.0 * timeout_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._generation = 0  # bumped after each pass of the worker; flush() waits on it
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # close() against the worker's end
        self._closed = False
        self._worker_done = False
        self._orphaned = False  # close() gave up waiting: the worker frees what it holds
        self._released = False
        self._deadline: float | None = None  # set by close(): bounds every request after it
        self._worker: threading.Thread | None = None
        self._store: TraceStore | None = None
        # This client's submissions and outcomes (stats()'s pending is the outbox's).
        self._counted = {"submitted": 0, "delivered": 0, "rejected": 0}
        self._pending_at_close = 0
        if not self.settings.langfuse_enabled:
            self.outbox: Outbox | None = None
            return
        self.outbox = Outbox(
            Path(outbox_path or self.settings.feedback_outbox),
            destination=self.settings.langfuse_destination(),
        )
        assert self.settings.langfuse_public_key and self.settings.langfuse_secret_key
        self._http = httpx.Client(
            base_url=self.settings.langfuse_url,
            timeout=timeout_s,
            # A redirect is answered as retry-later, never followed: following it would send
            # the keys to wherever a proxy or a deploy points.
            follow_redirects=False,
            auth=httpx.BasicAuth(
                self.settings.langfuse_public_key,
                self.settings.langfuse_secret_key.get_secret_value(),
            ),
        )
        if start:
            self._worker = threading.Thread(target=self._run, name="appsdk-feedback", daemon=True)
            start_untraced(self._worker)

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
        if self._closed:
            raise AppSDKError("this FeedbackClient is closed; submit through a new one")
        payload = _safe_score(feedback, self._engine, datetime.datetime.now(datetime.UTC))
        if self.settings.environment:
            payload["environment"] = self.settings.environment
        if self.outbox is None:
            self._to_local_store(feedback, payload)  # delivered, or raised StoreError
            self._count(submitted=1, delivered=1)
        else:
            self.outbox.put(feedback.id, payload)
            self._count(submitted=1)
            self._wake.set()
        pipeline = _runtime.current()
        if pipeline is not None:
            try:  # a negative rating keeps a trace sampling dropped (stored first, whatever)
                pipeline.feedback(feedback.trace_id, feedback.name, feedback.value)
            except Exception:
                _log.debug("appsdk: sampling could not take the rating", exc_info=True)
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
        assert self.outbox is not None
        failures = 0
        try:
            # A new worker probes at once, whatever backoff an earlier process left behind.
            self.outbox.expedite(self._batch_size)
            while not self._stop.is_set():
                self._wake.clear()  # before looking, so a submit() meanwhile is not missed
                try:
                    sent = self.deliver_once()
                    due_in = None if sent else self.outbox.next_due_in()
                    failures = 0
                except Exception:  # the worker must survive anything and try again later
                    failures += 1
                    _log.log(
                        logging.WARNING if failures == 1 else logging.DEBUG,
                        "appsdk: feedback delivery failed unexpectedly; retrying",
                        exc_info=True,
                    )
                    sent = 0
                    due_in = backoff_delay(failures, self._backoff_base, self._backoff_max)
                self._notify()
                if not sent:
                    # Until a rating is due, a submit() wakes it, or the next look (rows and
                    # leases of other processes are not signalled here); never a busy loop.
                    idle = _IDLE_POLL_S if due_in is None else max(due_in, _MIN_WAIT_S)
                    self._wake.wait(min(idle, _IDLE_POLL_S))
            self._last_pass()
        except Exception:
            _log.debug("appsdk: the feedback worker stopped on an error", exc_info=True)
        finally:
            self._worker_ends()

    def _notify(self) -> None:
        with self._progress:
            self._generation += 1
            self._progress.notify_all()

    def _last_pass(self) -> None:
        """At close: probe at once and deliver while Langfuse takes them, until the deadline.

        The first failure ends it: at exit, a down Langfuse is not waited for.
        """
        assert self.outbox is not None
        if self._remaining(None) <= 0:
            return
        self.outbox.expedite(self._batch_size)
        while self._remaining(None) > 0:
            attempted, failed = self._deliver_batch(None)
            if not attempted or failed:
                return

    def _worker_ends(self) -> None:
        self._notify()
        with self._lock:
            self._worker_done = True
            orphaned = self._orphaned
        if orphaned:
            self._release()

    def _remaining(self, deadline: float | None) -> float:
        """Seconds left before the nearest of ``deadline`` and close()'s deadline."""
        ends = [d for d in (deadline, self._deadline) if d is not None]
        return min(ends) - time.monotonic() if ends else math.inf

    def deliver_once(self) -> int:
        """Claim one batch of due ratings and deliver it; returns how many were attempted."""
        return self._deliver_batch(None)[0]

    def _deliver_batch(self, deadline: float | None) -> tuple[int, bool]:
        """One claimed batch: (ratings attempted, whether Langfuse failed and they wait)."""
        if self.outbox is None or self._remaining(deadline) <= 0:
            return 0, False
        items = self.outbox.claim(self._batch_size, self._lease_s)
        if not items:
            return 0, False
        return len(items), self._send(items, deadline)

    def _send(self, items: list[OutboxItem], deadline: float | None) -> bool:
        """POST ``items``, splitting as the answers ask; True when the rest must wait."""
        assert self.outbox is not None
        queue: deque[list[OutboxItem]] = deque([items])
        while queue:
            batch = queue.popleft()
            left = [item for b in queue for item in b]
            remaining = self._remaining(deadline)
            if remaining <= 0:
                self.outbox.release(batch + left)  # unsent: due for anyone, no attempt counted
                return True
            if batch is not items:  # a split: the requests before this one took time
                self.outbox.renew(batch + left, self._lease_s)
            verdict = self._post(batch, min(self._timeout_s, remaining))
            if verdict.action == "retry":
                attempts = max(item.attempts for item in batch)
                delay = backoff_delay(
                    attempts, self._backoff_base, self._backoff_max, verdict.retry_after
                )
                self.outbox.retry_later(batch + left, verdict.reason, delay)
                return True
            if verdict.action == "delivered":
                self.outbox.delivered(batch)  # and, Langfuse being up, what waits is due
                self._count(delivered=len(batch))
            elif verdict.action == "reject" or len(batch) == 1:
                self.outbox.rejected(batch, verdict.reason)
                self._count(rejected=len(batch))
            else:  # split: halves find the ratings at fault in log2(batch) rounds
                half = len(batch) // 2
                queue.extendleft([batch[half:], batch[:half]])
        return False

    def _post(self, batch: list[OutboxItem], timeout_s: float) -> Verdict:
        try:
            response = self._http.post(
                _SCORES, json=[item.payload for item in batch], timeout=timeout_s
            )
        except httpx.HTTPError as exc:
            return Verdict("retry", type(exc).__name__)
        verdict = classify(response, batch=len(batch))
        if verdict.action == "partial":
            verdict = partial_verdict(response, len(batch))
        if verdict.warning and verdict.warn_key not in self._warned:
            self._warned.add(verdict.warn_key or "")
            _log.warning("%s", verdict.warning)
        return verdict

    # -- waiting and closing ------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Deliver everything pending, ratings waiting out a backoff included.

        The oldest batch is tried at once; when Langfuse takes it, every waiting rating
        becomes due. Failures are retried with backoff until ``timeout_s``.

        Returns:
            True when nothing of this destination is pending (delivered or rejected); False
            at the deadline, or when the client is closed.
        """
        if self.outbox is None:
            return True
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            if self._closed:
                return False
            self.outbox.expedite(self._batch_size)
        if self._worker is None:
            return self._flush_here(deadline)
        self._wake.set()
        while True:
            with self._progress:
                generation = self._generation
            if not self.outbox.counts()["pending"]:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._progress:  # the worker's passes, or a look at other processes' work
                self._progress.wait_for(
                    functools.partial(self._moved_on, generation), min(remaining, _FLUSH_POLL_S)
                )

    def _moved_on(self, generation: int) -> bool:
        return self._generation != generation

    def _flush_here(self, deadline: float) -> bool:
        """flush() without a worker: deliver on this thread, each request within the deadline."""
        assert self.outbox is not None
        while self.outbox.counts()["pending"]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._deliver_batch(deadline)[0]:
                continue
            wait = max(self.outbox.next_due_in() or 0.0, _MIN_WAIT_S)
            self._wake.wait(min(wait, remaining, _FLUSH_POLL_S))
            self._wake.clear()
        return True

    def stats(self) -> dict[str, int]:
        """Outbox counts: pending, delivered, rejected."""
        return self.outbox.counts() if self.outbox is not None else {}

    def _count(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                self._counted[key] += value

    def counters(self) -> dict[str, int]:
        """What ``appsdk.stats()["feedback"]`` shows: ratings this client took (``submitted``),
        ``delivered`` (to Langfuse, or written to the local store without it) and
        ``rejected`` by Langfuse, and ``pending``: what waits in the outbox for this
        destination now, from any process (at close: what was left; -1 if unreadable).
        """
        with self._lock:
            counts = dict(self._counted)
            released = self._released
        pending = self._pending_at_close
        if self.outbox is not None and not released:
            try:
                pending = self.outbox.counts()["pending"]
            except Exception:  # closed meanwhile, or a broken file: stats() must not raise
                pending = self._pending_at_close if self._released else -1
        return {
            "submitted": counts["submitted"],
            "delivered": counts["delivered"],
            "pending": pending,
            "rejected": counts["rejected"],
        }

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what Langfuse takes within ``timeout_s``, then stop; never longer.

        The pending ratings are tried at once (backoff or not) and sent while Langfuse takes
        them; the first failure ends it. Every request is bounded by what is left of
        ``timeout_s``; a request already in flight at the deadline is abandoned to its
        daemon thread, which frees the client when it ends. What was not delivered stays in
        the outbox for the next start (a claim of this process is taken over at once by
        the next process of this machine, else when its lease ends). Closing twice is a no-op.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._deadline = deadline
        worker = self._worker
        if self.outbox is not None and worker is None:  # deliver on a thread we may abandon
            worker = threading.Thread(
                target=self._close_pass, name="appsdk-feedback-close", daemon=True
            )
            start_untraced(worker)
        self._stop.set()
        self._wake.set()
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
            with self._lock:
                if not self._worker_done:
                    self._orphaned = True
                    return
        self._release()

    def _close_pass(self) -> None:
        try:
            self._last_pass()
        except Exception:
            _log.debug("appsdk: feedback delivery at close failed", exc_info=True)
        finally:
            self._worker_ends()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if self.outbox is not None:
            try:
                self._pending_at_close = self.outbox.counts()["pending"]
            except Exception:
                self._pending_at_close = -1
            self._http.close()
            self.outbox.close()
        if self._store is not None:
            self._store.close()


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


# -- the process's default client -------------------------------------------------------------

_default: FeedbackClient | None = None
_default_owner: object | None = None  # the pipeline it was made for
_last_default: FeedbackClient | None = None  # the latest, closed or not: its counters
_default_lock = threading.Lock()


def default_client() -> FeedbackClient:
    """The process's feedback client, bound to the configured pipeline on first use.

    A client made for an earlier pipeline (before a reconfiguration) is replaced; its
    pending ratings stay in the outbox and the new client delivers them.
    """
    global _default, _default_owner, _last_default
    pipeline = _runtime.current()
    stale: FeedbackClient | None = None
    with _default_lock:
        if _default is not None and pipeline is not None and _default_owner is not pipeline:
            stale, _default = _default, None
        if _default is None:
            _default = _last_default = FeedbackClient()
            _default_owner = pipeline
            if pipeline is not None:
                # A fallback for a pipeline that does not call shutdown_default() itself.
                pipeline.on_shutdown.append(functools.partial(_retire, _default))
        client = _default
    if stale is not None:
        stale.close(0.0)  # never delays the caller; its worker ends on its own
    return client


def _retire(client: FeedbackClient) -> None:
    global _default
    with _default_lock:
        if _default is client:
            _default = None
    client.close(client.settings.shutdown_timeout_s)


def start_default_if_pending() -> bool:
    """Start the default client if the outbox holds pending ratings, so a configured process
    delivers what an earlier one left without waiting for a new submission.

    Cheap when there is nothing to do: no Langfuse, no outbox file, or no pending row costs
    a file check and one indexed query (no client, no thread, no identity hash). Call it after
    the pipeline is installed: the client binds to the current pipeline. Never raises.

    Returns:
        True when the default client runs (it already did, or was started now).
    """
    pipeline = _runtime.current()
    with _default_lock:
        if _default is not None and _default_owner is pipeline:
            return True
    if pipeline is None or not pipeline.settings.langfuse_enabled:
        return False
    try:
        if not has_pending(pipeline.settings.feedback_outbox):
            return False
        default_client()
    except Exception:  # an unreadable outbox must not break configure(); submit() will say
        _log.warning("appsdk: cannot open the feedback outbox", exc_info=True)
        return False
    return True


def flush_default(timeout_s: float) -> bool:
    """Deliver every pending rating of this configuration through the default client.

    Starts it first if the outbox holds pending ratings (see
    :func:`start_default_if_pending`). Ratings waiting out a backoff are tried at once, and
    all of them become due as soon as Langfuse takes one batch; failures are retried with
    backoff until ``timeout_s``, which it never exceeds. Never raises.

    Returns:
        True when nothing of this destination is pending in the outbox (also without
        Langfuse, or without any feedback); False at the deadline.
    """
    deadline = time.monotonic() + max(0.0, timeout_s)
    try:
        start_default_if_pending()
        with _default_lock:
            client = _default
        if client is None:
            return True
        return client.flush(max(0.0, deadline - time.monotonic()))
    except Exception:
        _log.warning("appsdk: flushing feedback failed", exc_info=True)
        return False


def stats_default(pipeline: object) -> dict[str, int] | None:
    """:meth:`FeedbackClient.counters` of the default client made for ``pipeline`` (also
    once closed), or None when that pipeline made none. Never raises."""
    with _default_lock:
        client = _last_default if _default_owner is pipeline else None
    return client.counters() if client is not None else None


def shutdown_default(timeout_s: float) -> None:
    """Close the default client: deliver what Langfuse takes within ``timeout_s``, then stop.

    Never takes longer than ``timeout_s``: every request is bounded by what is left of it and
    the worker is waited for only that long (a request still in flight is abandoned to its
    daemon thread; its ratings stay pending for the next start). A down Langfuse is tried
    once, not waited for. The next :func:`submit_feedback` starts a new default client.
    Never raises.
    """
    global _default
    with _default_lock:
        client, _default = _default, None
    if client is None:
        return
    try:
        client.close(timeout_s)
    except Exception:
        _log.warning("appsdk: closing the feedback client failed", exc_info=True)


def submit_feedback(feedback: Feedback | None = None, /, **fields: Any) -> str:
    """Submit one rating through the default :class:`FeedbackClient`; returns the score id."""
    return default_client().submit(feedback, **fields)
