"""One policy at the exit: secrets planted through every path reach no sink.

Each test plants secrets through every way user code (or a library it calls) can write to a
span — values, dict and metadata keys, names, trace attributes, the OpenTelemetry API on
appsdk's own spans, the langfuse client on them, exceptions, feedback — and then reads every
sink as bytes: the decompressed OTLP of every exporter, the local store file, the decompressed
spool, the feedback outbox, `appsdk traces show` and the captured logs.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langfuse import get_client
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from typer.testing import CliRunner

import appsdk
from appsdk import Policy
from appsdk.cli import app as cli_app
from tests.servers import OTLPReceiver, otlp_receiver

MARKER = "visible-marker-0042"

# name -> (as planted, a part of it that must never be seen)
CANARIES: dict[str, tuple[str, str]] = {
    "email": ("carol.danvers@example.org", "carol.danvers"),
    "openai_key": ("sk-proj-Zq8xT3BlbkFJ4k2mN9pQ7rS1vW5yA", "Zq8xT3BlbkFJ4k2mN9pQ7rS1vW5yA"),
    "aws_key": ("AKIAQWERTYUIOPASDFGH", "QWERTYUIOPASDFGH"),
    "github_token": (
        "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z",
        "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z",
    ),
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
    ),
    "langfuse_key": ("sk-lf-7f3a9c2e1b8d4f6a", "7f3a9c2e1b8d4f6a"),
    "card": ("4111 1111 1111 1111", "4111 1111 1111 1111"),
    "ssn": ("123-45-6789", "123-45-6789"),
    "iban": ("DE89370400440532013000", "370400440532013000"),
    "url_credentials": ("postgres://admin:hunter2pass@db.internal:5432/app", "hunter2pass"),
    "bearer": ("Bearer QmVhcmVyVG9rZW5WYWx1ZQ", "QmVhcmVyVG9rZW5WYWx1ZQ"),
    "private_key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
        "-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo",
    ),
    "phone": ("+1 415 555 0100", "415 555 0100"),
}


@dataclass
class Sinks:
    langfuse: OTLPReceiver
    refusing: OTLPReceiver
    root: Path

    def everything(self) -> bytes:
        """Every byte that left appsdk or was kept by it, decompressed."""
        parts = [r.body for r in self.langfuse.requests + self.refusing.requests]
        for path in self.root.rglob("*.db*"):
            parts.append(path.read_bytes())
            if path.name.endswith(".db"):
                parts.extend(_blobs(path))
        result = CliRunner().invoke(
            cli_app, ["traces", "show", "last", "--db", str(self.root / "traces.db")]
        )
        parts.append(result.output.encode())
        return b"\n".join(parts)


def _blobs(path: Path) -> Iterator[bytes]:
    """Every BLOB in a SQLite file, gunzipped when it is gzip (the spool's bodies)."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                for value in row:
                    if isinstance(value, bytes):
                        yield gzip.decompress(value) if value[:2] == b"\x1f\x8b" else value


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    with otlp_receiver() as langfuse, otlp_receiver(status=503) as refusing:
        yield Sinks(langfuse, refusing, tmp_path)


def _configure(sinks: Sinks, policy: Policy | None = None) -> None:
    appsdk.configure(
        policy=policy,
        langfuse_public_key="pk-lf-canary",
        langfuse_secret_key="sk-lf-canary-secret",
        langfuse_base_url=sinks.langfuse.url,
        otlp_endpoints=(sinks.refusing.traces_url,),
        local_store="always",
        store_path=str(sinks.root / "traces.db"),
        spool_path=str(sinks.root / "spool.db"),
    )


def _plant(secret: str) -> str:
    """Write ``secret`` (next to the visible marker) through every path; the trace id."""
    tagged = f"{MARKER} {secret}"

    @appsdk.observe(name=f"handler {secret}")
    def handler(question: str, options: dict[str, object]) -> dict[str, str]:
        appsdk.update_current_observation(
            metadata={f"key {secret}": tagged, "api_key": "plain-words-value"},
            status_message=tagged,
        )
        span = trace.get_current_span()
        span.set_attribute("app.note", tagged)
        span.set_attribute(f"app.key {secret}", MARKER)
        span.set_attribute("app.list", [tagged, MARKER])
        span.add_event(f"event {secret}", {"detail": tagged})
        span.record_exception(ValueError(tagged))
        with trace.get_tracer("appsdk").start_as_current_span(
            f"own {secret}", attributes={"own.value": tagged}
        ) as own:
            own.set_status(Status(StatusCode.ERROR, tagged))
            own.update_name(f"renamed {secret}")
        with appsdk.start_observation(f"child {secret}", as_type="generation") as child:
            client = get_client()
            client.update_current_generation(
                input=tagged, output=tagged, metadata={"lf": tagged}, model=f"m-{secret}"
            )
            child.span.set_attributes({"user.id": secret, "langfuse.trace.tags": [tagged]})
            child.update(output={secret: tagged})
        failing()
        return {f"answer {secret}": tagged}

    @appsdk.observe()
    def failing() -> None:
        try:
            raise RuntimeError(tagged)
        except RuntimeError:
            pass
        with pytest.raises(KeyError):
            inner_failure()

    @appsdk.observe()
    def inner_failure() -> None:
        raise KeyError(tagged)

    with appsdk.trace_attributes(
        user_id=secret,
        session_id=f"session {secret}",
        tags=[f"tag {secret}"],
        trace_name=f"trace {secret}",
        metadata={f"meta {secret}": tagged},
    ):
        handler(tagged, {f"opt {secret}": [tagged]})
        trace_id = appsdk.get_current_trace_id() or ""
    return trace_id


def _rate(trace_id: str, secret: str) -> None:
    appsdk.submit_feedback(
        trace_id=trace_id,
        name=f"rating {secret}",
        value=f"bad {secret}"[:500],
        comment=f"{MARKER} {secret}",
        session_id=f"session {secret}",
        metadata={"why": f"{MARKER} {secret}"},
    )


@pytest.mark.parametrize("kind", sorted(CANARIES))
def test_no_planted_secret_reaches_any_sink(
    kind: str, sinks: Sinks, caplog: pytest.LogCaptureFixture
) -> None:
    secret, core = CANARIES[kind]
    caplog.set_level(logging.DEBUG)
    _configure(sinks)
    with appsdk.start_observation("rated") as rated:
        pass
    _plant(secret)
    _rate(rated.trace_id, secret)
    appsdk.flush()
    sinks.langfuse.wait_for(lambda r: any(b"visible-marker" in q.body for q in r.requests))
    appsdk.shutdown(timeout_s=2.0)

    seen = sinks.everything() + caplog.text.encode()
    assert core.encode() not in seen, f"{kind} leaked"
    # The rating went out to Langfuse's scores API as well: its body is one of the sinks read.
    assert any(r.path == "/api/public/scores" for r in sinks.langfuse.requests)
    # The surrounding text does arrive: the guard removes the secret, not the content.
    assert MARKER.encode() in b"".join(r.body for r in sinks.langfuse.requests)
    assert MARKER.encode() in (sinks.root / "traces.db").read_bytes() + b"".join(
        path.read_bytes() for path in sinks.root.glob("traces.db-wal")
    )


def test_policy_none_sends_the_error_type_never_its_message(sinks: Sinks) -> None:
    _configure(sinks, Policy.none())

    @appsdk.observe()
    def handler(question: str) -> None:
        trace.get_current_span().record_exception(ValueError(f"{MARKER} recorded"))
        raise ValueError(f"{MARKER} quoting the user's question")

    with pytest.raises(ValueError):
        handler("q")
    with trace.get_tracer("third.party").start_as_current_span("raw") as raw:
        raw.set_status(Status(StatusCode.ERROR, f"{MARKER} status"))
        raw.set_attribute("langfuse.observation.status_message", f"{MARKER} status attribute")
    appsdk.flush()
    spans = sinks.langfuse.wait_for_spans(1)
    appsdk.shutdown(timeout_s=2.0)

    assert MARKER.encode() not in sinks.everything()
    (observed,) = [s for s in spans if s.name == "handler"]
    assert observed.status_message == "ValueError"
    assert observed.attributes["langfuse.observation.status_message"] == "ValueError"
    assert observed.attributes["langfuse.observation.level"] == "ERROR"


def test_a_function_policy_governs_what_later_writes_to_its_span(sinks: Sinks) -> None:
    _configure(sinks)

    @appsdk.observe(policy=Policy.none())
    def private(question: str) -> str:
        appsdk.update_current_observation(output=f"{MARKER} via update")
        trace.get_current_span().set_attribute("langfuse.observation.input", f"{MARKER} raw")
        get_client().update_current_span(output=f"{MARKER} via langfuse")
        with trace.get_tracer("third.party").start_as_current_span("inner") as inner:
            inner.set_attribute("input.value", f"{MARKER} in a child")
        return f"{MARKER} returned"

    private(f"{MARKER} asked")
    appsdk.flush()
    (span,) = sinks.langfuse.wait_for_spans(1)
    appsdk.shutdown(timeout_s=2.0)

    assert span.name == "private"
    assert b"inner" in (sinks.root / "traces.db").read_bytes()
    assert MARKER.encode() not in sinks.everything()


def test_trace_attributes_opened_before_configure_follow_the_policy(sinks: Sinks) -> None:
    with appsdk.trace_attributes(
        user_id="alice@example.com", session_id="s-1", metadata={"password": "pw-value"}
    ):
        _configure(sinks, Policy(pseudonymize_user_ids=True, pseudonym_key="k"))
        with appsdk.start_observation("inside"):
            pass
    appsdk.flush()
    (span,) = sinks.langfuse.wait_for_spans(1)
    appsdk.shutdown(timeout_s=2.0)

    assert span.attributes["user.id"].startswith("user-")
    assert span.attributes["session.id"].startswith("session-")
    assert json.loads(span.attributes["langfuse.trace.metadata.password"]) == "[REDACTED:SECRET]"
    assert b"alice" not in sinks.everything() and b"pw-value" not in sinks.everything()


def test_identity_and_trusted_values_are_not_rewritten(sinks: Sinks) -> None:
    """What appsdk rendered passes as it was; the guard rewrites only what others wrote."""
    _configure(sinks)

    @appsdk.observe()
    def handler(question: str) -> str:
        return "[REDACTED:EMAIL] stays one marker, not two"

    handler("mail bob@example.com")
    appsdk.flush()
    (span,) = sinks.langfuse.wait_for_spans(1)
    appsdk.shutdown(timeout_s=2.0)

    assert json.loads(span.attributes["langfuse.observation.input"]) == {
        "args": ["mail [REDACTED:EMAIL]"],
        "kwargs": {},
    }
    assert span.attributes["langfuse.observation.output"] == (
        "[REDACTED:EMAIL] stays one marker, not two"
    )
