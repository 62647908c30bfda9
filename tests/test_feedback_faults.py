"""Feedback under faults: nothing lost, nothing doubled, nothing hung (issue 15).

Every test counts ratings the way a user would: how many were created, how many Langfuse (the
stub) holds, and how many it was sent more than once.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import appsdk
from appsdk import sim
from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient, issue_feedback_token
from appsdk.feedback.client import flush_default, shutdown_default, start_default_if_pending
from appsdk.feedback.delivery import backoff_delay
from appsdk.integrations import feedback_app
from tests.langfuse_stub import PUBLIC_KEY, SECRET_KEY, LangfuseStub, langfuse_stub
from tests.servers import clean_env

TRACE = "ab" * 16
SECRET = "test-feedback-secret-0123456789"
FAST = (0.01, 0.05)
SLOW = (30.0, 60.0)  # a failure makes ratings wait 15-60 s: longer than any test waits


@pytest.fixture
def stub() -> Iterator[LangfuseStub]:
    with langfuse_stub() as s:
        yield s


def _client(stub: LangfuseStub, outbox: Path, **options: object) -> FeedbackClient:
    options.setdefault("backoff_s", FAST)
    return FeedbackClient(settings=load_settings(**stub.options()), outbox_path=outbox, **options)  # type: ignore[arg-type]


def _rate(client: FeedbackClient, count: int, prefix: str = "q") -> list[str]:
    return [client.submit(trace_id=TRACE, name=f"{prefix}{i}", value=i) for i in range(count)]


def _ledger(stub: LangfuseStub, ids: list[str]) -> dict[str, int]:
    """Ratings created, held by Langfuse, and accepted more than once."""
    return {
        "created": len(ids),
        "delivered": len(set(ids) & set(stub.scores)),
        "duplicated": len(stub.duplicates()),
    }


def _posted(stub: LangfuseStub) -> Counter[str]:
    """How often each score id was POSTed at all (accepted or not)."""
    return Counter(i for batch in stub.score_batches for i in batch)


def _outbox_env(stub: LangfuseStub, outbox: Path) -> dict[str, str]:
    return clean_env(
        LANGFUSE_PUBLIC_KEY=PUBLIC_KEY,
        LANGFUSE_SECRET_KEY=SECRET_KEY,
        LANGFUSE_BASE_URL=stub.url,
        APPSDK_FEEDBACK_OUTBOX=str(outbox),
        APPSDK_METRICS="false",
    )


# -- every answer classified -----------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 302, 307, 408, 429, 500, 502, 503])
def test_answers_that_can_succeed_later_are_retried_until_delivered(
    stub: LangfuseStub, tmp_path: Path, status: int
) -> None:
    with langfuse_stub() as elsewhere:
        headers = {"location": f"{elsewhere.url}/api/public/scores"} if status < 400 else {}
        for _ in range(3):
            stub.answer_scores(status, headers)
        client = _client(stub, tmp_path / "outbox.db", start=False)
        ids = _rate(client, 5)
        assert client.flush(10)
        assert _ledger(stub, ids) == {"created": 5, "delivered": 5, "duplicated": 0}
        assert client.stats() == {"pending": 0, "delivered": 5, "rejected": 0}
        assert elsewhere.count("/") == 0  # a redirect is never followed with the keys
        client.close()


def test_a_redirect_warns_once_naming_where_without_secrets(
    stub: LangfuseStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    location = "https://admin:hunter2-pw@proxy.example.com/login?token=tok-abc123&next=scores"
    for _ in range(3):
        stub.answer_scores(302, {"location": location})
    client = _client(stub, tmp_path / "outbox.db", start=False)
    ids = _rate(client, 2)
    with caplog.at_level(logging.WARNING, logger="appsdk"):
        assert client.flush(10)
    warnings = [r.getMessage() for r in caplog.records if "redirect" in r.getMessage()]
    assert len(warnings) == 1
    assert "proxy.example.com" in warnings[0] and stub.url in warnings[0]
    assert "hunter2" not in caplog.text and "abc123" not in caplog.text
    assert _ledger(stub, ids) == {"created": 2, "delivered": 2, "duplicated": 0}
    client.close()


def test_413_splits_the_batch_down_to_single_ratings(stub: LangfuseStub, tmp_path: Path) -> None:
    stub.score_max_items = 2
    client = _client(stub, tmp_path / "outbox.db", start=False)
    ids = _rate(client, 9)
    assert client.flush(10)
    assert _ledger(stub, ids) == {"created": 9, "delivered": 9, "duplicated": 0}
    assert client.stats()["rejected"] == 0
    client.close()


def test_a_single_rating_too_large_is_rejected_with_the_reason(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    stub.score_max_items = 0
    client = _client(stub, tmp_path / "outbox.db", start=False)
    ids = _rate(client, 2)
    assert client.flush(10)
    assert client.outbox is not None
    reasons = dict(client.outbox.rejections())
    assert set(reasons) == set(ids)
    assert all(r.startswith("HTTP 413") and "too large" in r for r in reasons.values())
    client.close()


def test_a_malformed_batch_is_split_to_reject_only_the_bad_rating(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    client = _client(stub, tmp_path / "outbox.db", start=False)
    ids = _rate(client, 6)
    stub.score_invalid.add(ids[3])
    assert client.flush(10)
    assert _ledger(stub, ids) == {"created": 6, "delivered": 5, "duplicated": 0}
    assert client.outbox is not None
    ((rejected, reason),) = client.outbox.rejections()
    assert rejected == ids[3] and reason.startswith("HTTP 400")
    client.close()


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_what_cannot_succeed_is_rejected_once_and_kept_with_the_reason(
    stub: LangfuseStub, tmp_path: Path, status: int
) -> None:
    stub.answer_scores(status)
    client = _client(stub, tmp_path / "outbox.db", start=False)
    (rating,) = _rate(client, 1)
    assert client.flush(10)
    assert client.outbox is not None
    ((rejected, reason),) = client.outbox.rejections()
    assert rejected == rating and reason.startswith(f"HTTP {status}")
    assert stub.score_posts == 1  # not retried
    client.close()


def test_retry_after_is_honoured(stub: LangfuseStub, tmp_path: Path) -> None:
    stub.answer_scores(429, {"retry-after": "120"})
    client = _client(stub, tmp_path / "outbox.db", start=False)
    ids = _rate(client, 3)
    assert client.deliver_once() == 3
    assert client.outbox is not None
    wait = client.outbox.next_due_in()
    assert wait is not None and 115 <= wait <= 300
    assert client.deliver_once() == 0  # not before Langfuse said
    assert stub.score_posts == 1
    assert client.flush(10)  # an explicit flush probes at once
    assert _ledger(stub, ids) == {"created": 3, "delivered": 3, "duplicated": 0}
    client.close()


def test_backoff_stays_finite_after_any_number_of_failures(
    stub: LangfuseStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for attempts in (0, 1, 30, 1024, 1025, 10**6):
        assert 0 < backoff_delay(attempts, 0.2, 60.0) <= 60.0
    assert backoff_delay(10**6, 0.2, 60.0) >= 30.0
    outbox = tmp_path / "outbox.db"
    stub.score_status = 503
    client = _client(stub, outbox, start=False, backoff_s=(10.0, 40.0))
    _rate(client, 1)
    with sqlite3.connect(outbox) as db:  # a backend dead for weeks
        db.execute("UPDATE outbox SET attempts = 5000")
    with caplog.at_level(logging.DEBUG, logger="appsdk"):
        assert client.deliver_once() == 1
    assert client.outbox is not None
    wait = client.outbox.next_due_in()
    assert wait is not None and 19 <= wait <= 40  # half the ceiling to the ceiling
    assert "Traceback" not in caplog.text and "unexpectedly" not in caplog.text
    client.close(0)


# -- nothing doubled: claims -----------------------------------------------------------------


def test_two_clients_on_one_outbox_post_each_rating_once(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    first = _client(stub, outbox, batch_size=5)
    second = _client(stub, outbox, batch_size=5)
    ids: list[str] = []
    for i in range(60):
        ids.append(first.submit(trace_id=TRACE, name=f"first-{i}", value=i))
        ids.append(second.submit(trace_id=TRACE, name=f"second-{i}", value=i))
    assert first.flush(30) and second.flush(30)
    assert _ledger(stub, ids) == {"created": 120, "delivered": 120, "duplicated": 0}
    assert set(_posted(stub).values()) == {1}
    first.close()
    second.close()


DELIVER = """
import sys
from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient
settings = load_settings()
client = FeedbackClient(settings=settings, batch_size=5, backoff_s=(0.01, 0.05))
print("flushed" if client.flush(60) else "timeout", flush=True)
client.close(5)
"""


def test_two_processes_draining_one_outbox_post_each_rating_once(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    filler = _client(stub, outbox, start=False)
    ids = _rate(filler, 300)
    filler.close(0)
    env = _outbox_env(stub, outbox)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", DELIVER], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=90)[0].strip() for worker in workers]
    assert outputs == ["flushed", "flushed"]
    assert _ledger(stub, ids) == {"created": 300, "delivered": 300, "duplicated": 0}
    assert set(_posted(stub).values()) == {1}


def test_a_rating_resubmitted_while_in_flight_is_sent_again_with_its_new_value(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    stub.hang_scores = threading.Event()
    client = _client(stub, tmp_path / "outbox.db", start=False)
    (rating,) = [client.submit(trace_id=TRACE, name="stars", value=2, user_id="u1")]
    sending = threading.Thread(target=client.deliver_once)
    sending.start()
    stub.wait_for(lambda s: s.score_posts >= 1)
    client.submit(trace_id=TRACE, name="stars", value=5, user_id="u1")  # changed their mind
    stub.hang_scores.set()  # the old version's request fails
    sending.join(30)
    stub.hang_scores = None
    assert client.flush(10)
    assert stub.scores[rating]["value"] == 5
    client.close()


# -- nothing lost at flush, shutdown and restart ---------------------------------------------


def test_a_successful_delivery_makes_waiting_ratings_due_at_once(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    client = _client(stub, tmp_path / "outbox.db", start=False, backoff_s=SLOW)
    stub.score_status = 503
    waiting = _rate(client, 3, "waiting-")
    assert client.deliver_once() == 3  # they now wait 15-60 s
    assert client.deliver_once() == 0
    stub.score_status = None
    fresh = _rate(client, 1, "fresh-")
    assert client.deliver_once() == 1  # only the fresh one is due; Langfuse takes it
    assert client.deliver_once() == 3  # ... so the waiting ones are due at once
    assert _ledger(stub, waiting + fresh) == {"created": 4, "delivered": 4, "duplicated": 0}
    client.close()


def test_flush_delivers_ratings_waiting_out_a_backoff(
    stub: LangfuseStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(stub, tmp_path / "outbox.db", backoff_s=SLOW)  # with its worker
    assert client.outbox is not None
    failed = threading.Event()
    record = client.outbox.retry_later

    def recorded(*args: object, **kwargs: object) -> None:
        record(*args, **kwargs)  # type: ignore[arg-type]
        failed.set()

    monkeypatch.setattr(client.outbox, "retry_later", recorded)
    stub.answer_scores(503)
    ids = _rate(client, 1)
    assert failed.wait(30)
    wait = client.outbox.next_due_in()
    assert wait is not None and wait > 10  # the worker alone would wait that long
    assert client.flush(10)
    assert _ledger(stub, ids) == {"created": 1, "delivered": 1, "duplicated": 0}
    client.close()


def test_close_delivers_ratings_waiting_out_a_backoff_once_langfuse_is_back(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    client = _client(stub, outbox, start=False, backoff_s=SLOW, batch_size=4)
    stub.score_status = 503
    ids = _rate(client, 10)
    while client.deliver_once():  # every batch fails once and waits 15-60 s
        pass
    stub.score_status = None
    client.close(10)
    assert _ledger(stub, ids) == {"created": 10, "delivered": 10, "duplicated": 0}
    after = _client(stub, outbox, start=False)
    assert after.stats() == {"pending": 0, "delivered": 10, "rejected": 0}
    after.close()


def test_close_tries_a_down_langfuse_once_and_keeps_every_rating(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    stub.score_status = 503
    client = _client(stub, outbox, start=False)
    _rate(client, 5)
    client.close(10)
    assert stub.score_posts == 1  # one probe: exit does not wait for a down Langfuse
    after = _client(stub, outbox, start=False)
    assert after.stats() == {"pending": 5, "delivered": 0, "rejected": 0}
    after.close(0)


def test_close_never_waits_for_a_black_holed_langfuse(stub: LangfuseStub, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    stub.hang_scores = threading.Event()
    # The request may take an hour: close() can only return by not waiting for it.
    client = _client(stub, outbox, timeout_s=3600.0)
    _rate(client, 1)
    stub.wait_for(lambda s: s.score_posts >= 1)
    closing = threading.Thread(target=client.close, args=(0.2,))
    closing.start()
    closing.join(60)
    assert not closing.is_alive()
    assert not stub.hang_scores.is_set()  # Langfuse never answered before close() returned
    stub.hang_scores.set()
    after = _client(stub, outbox, start=False)
    assert after.stats()["pending"] == 1  # kept for the next start
    after.close(0)


KILLED = """
import sys
from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient
client = FeedbackClient(settings=load_settings(), batch_size=10, backoff_s=(30.0, 60.0),
                        start=False)
for i in range(30):
    client.submit(trace_id="ab" * 16, name=f"outage-{i}", value=i)
while client.deliver_once():  # the outage: each batch fails and waits 15-60 s
    pass
print("waiting", flush=True)
sys.stdin.readline()
client.flush(60)  # its request hangs; the process is killed in flight, holding a claim
"""

RESTARTED = """
import appsdk
from appsdk.feedback.client import flush_default, shutdown_default
appsdk.configure()
print("flushed" if flush_default(20) else "timeout", flush=True)
shutdown_default(20)
"""


def test_ratings_through_an_outage_and_a_sigkill_are_delivered_by_a_restart(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    env = _outbox_env(stub, outbox)
    stub.score_status = 503
    first = subprocess.Popen(
        [sys.executable, "-c", KILLED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert first.stdin is not None and first.stdout is not None
    assert first.stdout.readline().strip() == "waiting"
    stub.hang_scores = threading.Event()
    stub.score_status = None
    first.stdin.write("go\n")
    first.stdin.flush()
    stub.wait_for(lambda s: s.score_posts >= 4)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    first.stdin.close()
    first.stdout.close()
    stub.hang_scores.set()
    stub.hang_scores = None
    restarted = subprocess.run(
        [sys.executable, "-c", RESTARTED],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=90,
    )
    assert restarted.stdout.split() == ["flushed"], restarted.stderr
    names = sorted(score["name"] for score in stub.scores.values())
    assert names == sorted(f"outage-{i}" for i in range(30))
    assert stub.duplicates() == {}


def test_a_configured_process_drains_its_outbox_without_a_new_submission(
    stub: LangfuseStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox.db"
    monkeypatch.setenv("APPSDK_FEEDBACK_OUTBOX", str(outbox))
    appsdk.configure(**stub.options())
    assert not start_default_if_pending()  # no outbox yet: nothing started, nothing created
    assert not outbox.exists()
    assert "appsdk-feedback" not in {t.name for t in threading.enumerate()}

    stub.score_status = 503
    earlier = _client(stub, outbox, start=False, backoff_s=SLOW)
    ids = _rate(earlier, 4)
    earlier.deliver_once()  # left waiting 15-60 s by an earlier process
    earlier.close(0)
    stub.score_status = None

    assert start_default_if_pending()
    stub.wait_for(lambda s: set(ids) <= set(s.scores))
    assert flush_default(10)
    assert _ledger(stub, ids) == {"created": 4, "delivered": 4, "duplicated": 0}
    shutdown_default(5)


def test_flush_and_shutdown_of_the_default_client(
    stub: LangfuseStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert flush_default(1)  # nothing configured: nothing pending
    monkeypatch.setenv("APPSDK_FEEDBACK_OUTBOX", str(tmp_path / "outbox.db"))
    appsdk.configure(**stub.options())
    ids = [appsdk.submit_feedback(trace_id=TRACE, name=f"d{i}", value=i) for i in range(3)]
    assert flush_default(10)
    assert _ledger(stub, ids) == {"created": 3, "delivered": 3, "duplicated": 0}
    stub.score_status = 503
    pending = appsdk.submit_feedback(trace_id=TRACE, name="late", value=1)
    shutdown_default(5)
    shutdown_default(5)  # a second call has nothing to do
    stub.score_status = None
    assert flush_default(10)  # a new default client delivers what the last one kept
    assert pending in stub.scores


# -- the endpoint holds ----------------------------------------------------------------------


@pytest.fixture
def endpoint(stub: LangfuseStub, tmp_path: Path) -> Iterator[httpx.Client]:
    client = _client(stub, tmp_path / "outbox.db")
    app = feedback_app(
        client=client,
        secret=SECRET,
        user_id=lambda r: r.headers.get("x-user"),
        ratings_per_minute=3,
        max_body_bytes=16_384,
    )
    with sim.serving(app) as url, httpx.Client(base_url=url, headers={"x-user": "alice"}) as http:
        yield http
    client.close()


def _post(http: httpx.Client, body: bytes, content_type: str = "application/json") -> int:
    return http.post("/feedback", content=body, headers={"content-type": content_type}).status_code


def test_deeply_nested_bodies_get_400_not_500(endpoint: httpx.Client) -> None:
    token = issue_feedback_token(TRACE, user_id="alice", secret=SECRET)
    deep = b"[" * 5000 + b"]" * 5000  # 10 KB
    assert _post(endpoint, deep) == 400
    nested_value = (
        b'{"token": "'
        + token.encode()
        + b'", "name": "n", "value": '
        + b"[" * 4000
        + b"]" * 4000
        + b"}"
    )
    assert _post(endpoint, nested_value) == 400
    assert _post(endpoint, b'{"token": "x", "name": "[[[[[[[[[[[[[[[[[[[[", "value": 1}') == 401


def test_only_json_is_accepted(endpoint: httpx.Client) -> None:
    token = issue_feedback_token(TRACE, user_id="alice", secret=SECRET)
    body = f'{{"token": "{token}", "name": "helpful", "value": true}}'.encode()
    for refused in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/json; charset=latin-1",
        "application/jsonx",
        "",
    ):
        assert _post(endpoint, body, refused) == 415, refused
    assert _post(endpoint, body, "application/json; charset=UTF-8") == 202
    assert _post(endpoint, body, "Application/JSON") == 202


def test_a_token_has_one_spelling(endpoint: httpx.Client) -> None:
    token = issue_feedback_token(TRACE, user_id="alice", secret=SECRET)
    for junk in ("!!!!", "=", "==", " ", "\\n", "."):
        body = f'{{"token": "{token}{junk}", "name": "n", "value": 1}}'.encode()
        assert _post(endpoint, body) == 401, junk


def test_the_rate_limit_is_per_answer_whatever_the_token(endpoint: httpx.Client) -> None:
    one = issue_feedback_token(TRACE, user_id="alice", secret=SECRET)
    other = issue_feedback_token(TRACE, user_id="alice", ttl_s=60, secret=SECRET)
    assert one != other
    statuses = [
        _post(endpoint, f'{{"token": "{token}", "name": "n", "value": 1}}'.encode())
        for token in (one, one, one, one + "!!!!", other, other)
    ]
    assert statuses == [202, 202, 202, 401, 429, 429]
    another_answer = issue_feedback_token("cd" * 16, user_id="alice", secret=SECRET)
    body = f'{{"token": "{another_answer}", "name": "n", "value": 1}}'.encode()
    assert _post(endpoint, body) == 202


def test_ids_of_no_trace_are_refused_with_the_field_named() -> None:
    from appsdk import issue_feedback_token

    with pytest.raises(ValueError, match="trace_id is the all-zero id"):
        issue_feedback_token("0" * 32, secret="k" * 32)
    with pytest.raises(ValueError, match="trace_id must be 32 lowercase hex"):
        issue_feedback_token("abc", secret="k" * 32)
    with pytest.raises(ValueError, match="observation_id is the all-zero id"):
        issue_feedback_token("ab" * 16, "0" * 16, secret="k" * 32)
    with pytest.raises(appsdk.feedback.FeedbackValidationError, match="all-zero"):
        appsdk.submit_feedback(trace_id="0" * 32, name="helpful", value=True)


def test_the_endpoint_without_a_secret_fails_when_it_is_built() -> None:
    from appsdk.integrations import feedback_app

    with pytest.raises(appsdk.ConfigError, match="APPSDK_FEEDBACK_SECRET"):
        feedback_app()
