"""Feedback: validated, durable through outages and crashes, idempotent, unforgeable."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import appsdk
from appsdk import sim
from appsdk.cli import app as cli
from appsdk.config import load_settings
from appsdk.feedback import (
    ExpiredFeedbackToken,
    FeedbackClient,
    FeedbackValidationError,
    ForbiddenFeedbackToken,
    InvalidFeedbackToken,
    issue_feedback_token,
    verify_feedback_token,
)
from appsdk.integrations import feedback_app
from tests.langfuse_stub import LangfuseStub, langfuse_stub, start
from tests.servers import clean_env

SECRET = "test-feedback-secret-0123456789"
TRACE = "ab" * 16
FAST = (0.01, 0.05)


@pytest.fixture
def stub() -> Iterator[LangfuseStub]:
    with langfuse_stub() as s:
        yield s


def _client(stub: LangfuseStub, outbox: Path, **options: object) -> FeedbackClient:
    settings = load_settings(**stub.options())
    return FeedbackClient(settings=settings, outbox_path=outbox, backoff_s=FAST, **options)  # type: ignore[arg-type]


def test_bad_feedback_names_every_field_at_fault(stub: LangfuseStub, tmp_path: Path) -> None:
    client = _client(stub, tmp_path / "outbox.db", start=False)
    with pytest.raises(FeedbackValidationError) as caught:
        client.submit(
            trace_id="not-hex",
            observation_id="xyz",
            name="",
            value=True,
            data_type="NUMERIC",
            comment="x" * 5000,
        )
    fields = {e["field"] for e in caught.value.errors}
    assert {"trace_id", "observation_id", "name", "comment"} <= fields
    with pytest.raises(FeedbackValidationError, match="does not fit"):
        client.submit(trace_id=TRACE, name="stars", value="five", data_type="NUMERIC")
    assert client.stats() == {"pending": 0, "delivered": 0, "rejected": 0}
    client.close()


def test_types_are_inferred_and_comments_follow_the_policy(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    settings = load_settings(environment="staging", **stub.options())
    client = FeedbackClient(settings=settings, outbox_path=tmp_path / "outbox.db", backoff_s=FAST)
    client.submit(trace_id=TRACE, name="helpful", value=True, user_id="u1")
    client.submit(
        trace_id=TRACE, name="stars", value=4, user_id="u1", comment="call me at 555-123-4567"
    )
    client.submit(trace_id=TRACE, name="topic", value="billing", user_id="u1")
    assert client.flush(10)
    by_name = {s["name"]: s for s in stub.scores.values()}
    assert by_name["helpful"]["dataType"] == "BOOLEAN" and by_name["helpful"]["value"] == 1
    assert by_name["stars"]["dataType"] == "NUMERIC"
    assert by_name["stars"]["comment"] == "call me at [REDACTED:PHONE]"
    assert by_name["topic"]["dataType"] == "CATEGORICAL"
    assert {score["environment"] for score in stub.scores.values()} == {"staging"}
    client.close()


def test_a_resubmission_upserts_with_the_same_id_and_timestamp(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    client = _client(stub, tmp_path / "outbox.db")
    first = client.submit(trace_id=TRACE, name="stars", value=2, user_id="u1")
    assert client.flush(10)
    first_timestamp = stub.scores[first]["timestamp"]
    second = client.submit(trace_id=TRACE, name="stars", value=5, user_id="u1")
    other_user = client.submit(trace_id=TRACE, name="stars", value=1, user_id="u2")
    assert client.flush(10)
    assert first == second != other_user
    assert stub.scores[first]["value"] == 5
    assert stub.scores[first]["timestamp"] == first_timestamp
    assert len(stub.scores) == 2
    client.close()


def test_every_score_survives_an_outage_of_503s_then_refused_connections(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    client = _client(stub, tmp_path / "outbox.db")
    stub.score_status = 503
    ids = [client.submit(trace_id=TRACE, name=f"q{i}", value=i) for i in range(20)]
    stub.wait_for(lambda s: s.score_posts >= 2)
    stub.stop()  # now the port refuses connections
    assert not client.flush(0.3)
    assert client.stats()["pending"] == 20
    stub.score_status = None
    start(stub)
    assert client.flush(30)
    assert set(stub.scores) == set(ids)
    assert client.stats() == {"pending": 0, "delivered": 20, "rejected": 0}
    client.close()


def test_rejected_items_are_kept_with_the_reason_and_not_retried(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    client = _client(stub, tmp_path / "outbox.db", start=False)
    good = client.submit(trace_id=TRACE, name="good", value=1)
    bad = client.submit(trace_id=TRACE, name="bad", value=1)
    stub.score_rejects.add(bad)
    assert client.flush(10)
    assert set(stub.scores) == {good}
    assert client.outbox is not None
    assert client.outbox.rejections() == [(bad, "rejected by Langfuse: traceId does not exist")]
    assert stub.score_receipts[good] <= 2  # resent once to learn which item was refused
    posts = stub.score_posts
    client.deliver_once()
    assert stub.score_posts == posts  # nothing left to send
    client.close()


DELIVER_SCRIPT = """
import sys
from appsdk.config import load_settings
from appsdk.feedback import FeedbackClient
url, outbox, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = load_settings(langfuse_public_key="pk-lf-test",
                         langfuse_secret_key="sk-lf-test-secret", langfuse_base_url=url)
client = FeedbackClient(settings=settings, outbox_path=outbox, backoff_s=(0.01, 0.05))
for i in range(count):
    client.submit(trace_id="ab" * 16, name=f"crash-{i}", value=i)
print("submitted", flush=True)
ok = client.flush(60)
print("flushed" if ok else "timeout", flush=True)
"""


def test_a_process_killed_mid_delivery_delivers_everything_after_restart(
    stub: LangfuseStub, tmp_path: Path
) -> None:
    outbox = str(tmp_path / "outbox.db")
    stub.hang_scores = threading.Event()  # the first delivery never gets an answer
    env = clean_env()
    first = subprocess.Popen(
        [sys.executable, "-c", DELIVER_SCRIPT, stub.url, outbox, "30"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert first.stdout is not None and first.stdout.readline().strip() == "submitted"
    stub.wait_for(lambda s: s.score_posts >= 1)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    first.stdout.close()
    stub.hang_scores.set()
    stub.hang_scores = None
    second = subprocess.run(
        [sys.executable, "-c", DELIVER_SCRIPT, stub.url, outbox, "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )
    assert second.stdout.split() == ["submitted", "flushed"], second.stderr
    names = sorted(score["name"] for score in stub.scores.values())
    assert names == sorted(f"crash-{i}" for i in range(30))
    assert len(stub.scores) == 30  # by id: a resend of the in-flight batch upserted


def test_without_langfuse_feedback_lands_in_the_local_store(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    appsdk.configure(store_path=store)
    with appsdk.start_observation("answer") as obs:
        trace_id = obs.trace_id
    appsdk.flush()
    appsdk.submit_feedback(trace_id=trace_id, name="helpful", value=True, comment="great")
    result = CliRunner().invoke(cli, ["traces", "show", trace_id, "--db", str(store)])
    assert result.exit_code == 0, result.output
    assert "score helpful = True (BOOLEAN)" in result.output and '"great"' in result.output


def test_tokens_reject_forgery_expiry_and_other_users() -> None:
    token = issue_feedback_token(TRACE, "cd" * 8, user_id="alice", secret=SECRET)
    grant = verify_feedback_token(token, user_id="alice", secret=SECRET)
    assert (grant.trace_id, grant.observation_id, grant.user_id) == (TRACE, "cd" * 8, "alice")
    with pytest.raises(ForbiddenFeedbackToken):
        verify_feedback_token(token, user_id="mallory", secret=SECRET)
    with pytest.raises(ForbiddenFeedbackToken):
        verify_feedback_token(token, user_id=None, secret=SECRET)
    forged = issue_feedback_token("ef" * 16, user_id="alice", secret="another-secret-0123456789")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (forged, tampered, "garbage", ""):
        with pytest.raises(InvalidFeedbackToken):
            verify_feedback_token(bad, user_id="alice", secret=SECRET)
    expired = issue_feedback_token(TRACE, user_id="alice", ttl_s=1, secret=SECRET)
    with pytest.raises(ExpiredFeedbackToken):
        _verify_later(expired, seconds=2)


def _verify_later(token: str, seconds: int) -> None:
    import time
    from unittest import mock

    later = time.time() + seconds
    with mock.patch("appsdk.feedback.tokens.time.time", return_value=later):
        verify_feedback_token(token, user_id="alice", secret=SECRET)


def test_keys_rotate_without_breaking_issued_tokens() -> None:
    old = "old-feedback-secret-0123456789"
    token = issue_feedback_token(TRACE, secret=old)
    assert verify_feedback_token(token, secret=[old, SECRET]).trace_id == TRACE
    with pytest.raises(InvalidFeedbackToken):
        verify_feedback_token(token, secret=SECRET)


def test_missing_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(appsdk.ConfigError, match="APPSDK_FEEDBACK_SECRET"):
        issue_feedback_token(TRACE)


@pytest.fixture
def endpoint(stub: LangfuseStub, tmp_path: Path) -> Iterator[tuple[httpx.Client, FeedbackClient]]:
    client = _client(stub, tmp_path / "outbox.db")
    app = feedback_app(
        client=client,
        secret=SECRET,
        user_id=lambda r: r.headers.get("x-user"),
        ratings_per_minute=3,
        max_body_bytes=2048,
    )
    with sim.serving(app) as url, httpx.Client(base_url=url) as http:
        yield http, client
    client.close()


def test_the_endpoint_stores_valid_ratings_and_refuses_the_rest(
    endpoint: tuple[httpx.Client, FeedbackClient], stub: LangfuseStub
) -> None:
    http, client = endpoint
    token = issue_feedback_token(TRACE, user_id="alice", secret=SECRET)
    ok = http.post(
        "/feedback",
        json={"token": token, "name": "helpful", "value": True},
        headers={"x-user": "alice"},
    )
    assert ok.status_code == 202
    assert client.flush(10) and stub.scores[ok.json()["id"]]["traceId"] == TRACE
    cases = [
        ({"token": token, "name": "helpful", "value": True}, {"x-user": "mallory"}, 403),
        ({"token": "forged", "name": "helpful", "value": True}, {"x-user": "alice"}, 401),
        ({"token": token, "value": True}, {"x-user": "alice"}, 400),
        ({"token": token, "name": "x", "value": True, "trace_id": "ef" * 16}, {}, 400),
        ({"token": token, "name": "stars", "value": [1]}, {"x-user": "alice"}, 400),
    ]
    for body, headers, status in cases:
        response = http.post("/feedback", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
    too_big = http.post(
        "/feedback", content=b"{" + b" " * 4096 + b"}", headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    for _ in range(3):
        http.post(
            "/feedback", json={"token": token, "name": "n", "value": 1}, headers={"x-user": "alice"}
        )
    limited = http.post(
        "/feedback", json={"token": token, "name": "n", "value": 1}, headers={"x-user": "alice"}
    )
    assert limited.status_code == 429


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: __import__("json").dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "token": st.text(max_size=40) | st.just("VALID"),
                "name": json_values,
                "value": json_values,
            }
        ).map(lambda d: __import__("json").dumps(d).encode()),
    )
)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzzed_bodies_never_get_a_500(
    endpoint: tuple[httpx.Client, FeedbackClient], body: bytes
) -> None:
    http, _ = endpoint
    token = issue_feedback_token(TRACE, secret=SECRET)
    response = http.post(
        "/feedback",
        content=body.replace(b'"VALID"', f'"{token}"'.encode()),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (202, 400, 401, 403, 413, 429), response.text
