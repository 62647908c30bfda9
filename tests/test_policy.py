from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langfuse import observe as langfuse_observe
from opentelemetry import trace

import appsdk
from appsdk import CaptureMode, ConfigError, Policy
from tests.secrets_strategies import prose_with, secrets, sensitive_part
from tests.servers import OTLPReceiver, otlp_receiver


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as receiver:
        yield receiver


def _configure(receiver: OTLPReceiver, policy: Policy | None = None) -> None:
    appsdk.configure(
        policy=policy,
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-p",
        langfuse_base_url=receiver.url,
        otlp_endpoints=(receiver.traces_url,),
    )


def _everything_user_code_can_record(
    text: str, secret_value: str, *, in_other_attributes: bool = True
) -> None:
    """Content reaches spans through every channel: args, returns, metadata, third parties."""
    other = {"db.statement": text} if in_other_attributes else {}

    @appsdk.observe()
    def handler(question: str, options: dict[str, Any], password: str = "") -> dict[str, Any]:
        appsdk.update_current_observation(metadata={"note": text, "nested": {"t": [text]}})
        with appsdk.start_observation("llm", as_type="generation", input=[text]) as gen:
            gen.update(output=text, model_parameters={"api_key": secret_value})
        tracer = trace.get_tracer("third.party.instrumentation")
        with tracer.start_as_current_span(
            "raw",
            attributes={
                "input.value": text,
                "gen_ai.prompt.0.content": text,
                "gen_ai.input.messages": json.dumps([{"role": "user", "content": text}]),
                "langfuse.observation.metadata.x": json.dumps(text),
                **other,
            },
        ) as raw:
            if in_other_attributes:
                raw.add_event("log", {"message": text})
        return {"answer": text, "echo": options}

    @langfuse_observe()
    def their_handler(question: str) -> str:
        return question

    handler(text, {"inner": text}, password=secret_value)
    their_handler(text)


def _received_bytes(receiver: OTLPReceiver, since: int) -> bytes:
    with receiver.changed:
        return b"".join(r.body for r in receiver.requests[since:])


@given(st.data(), st.lists(secrets(), min_size=1, max_size=3))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_planted_secret_reaches_the_wire_under_the_default_policy(
    module_receiver: OTLPReceiver, data: st.DataObject, planted: list[tuple[str, str]]
) -> None:
    if appsdk.runtime.current() is None:
        _configure(module_receiver)
    text = data.draw(prose_with([value for _, value in planted]))
    since = len(module_receiver.requests)
    _everything_user_code_can_record(text, planted[0][1])
    assert appsdk.flush()
    module_receiver.wait_for(lambda r: len(r.requests) >= since + 2)
    wire = _received_bytes(module_receiver, since)
    assert b"[REDACTED:" in wire  # the content arrived, redacted
    for kind, value in planted:
        assert sensitive_part(kind, value).encode() not in wire, (kind, value)


def test_the_none_policy_sends_no_content_at_all(receiver: OTLPReceiver) -> None:
    _configure(receiver, Policy.none())
    marker = "unmistakable-content-marker-7f3a"
    # "none" is about content: other attributes (a SQL statement, a URL) are not content and
    # are only scrubbed of secrets, so the marker goes into content channels alone here.
    _everything_user_code_can_record(marker, marker, in_other_attributes=False)
    assert appsdk.flush()
    receiver.wait_for_spans(4 + 3)  # the OTLP endpoint gets all 4, Langfuse the 3 of its kind
    wire = _received_bytes(receiver, 0)
    assert b"handler" in wire and b"raw" in wire
    assert marker.encode() not in wire


def test_metadata_mode_records_size_and_hash_but_no_text(receiver: OTLPReceiver) -> None:
    _configure(receiver, Policy(inputs="metadata", pseudonym_key="k"))

    @appsdk.observe()
    def handler(question: str) -> str:
        return "ok"

    handler("what is in the secret vault?")
    assert appsdk.flush()
    span = receiver.wait_for_spans(1)[0]
    recorded = json.loads(span.attributes["langfuse.observation.input"])
    assert recorded["type"] == "dict" and recorded["chars"] > 0 and len(recorded["hash"]) == 16
    assert "vault" not in span.attributes["langfuse.observation.input"]
    assert span.attributes["langfuse.observation.output"] == "ok"


def test_truncation_is_marked_and_happens_after_redaction() -> None:
    policy = Policy(max_chars=40, max_items=2)
    text = "x" * 20 + " bob@example.com " + "y" * 50
    rendered = policy.render("inputs", {"items": [text, 2, 3]})
    assert rendered is not None
    data = json.loads(rendered)
    assert data["items"][0].startswith("x" * 20 + " [REDACTED:EMAIL]")
    assert "truncated" in data["items"][0]
    assert data["items"][2] == "[truncated 1 items]"


def test_policy_from_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT")
    policy = Policy.from_env()
    assert policy.messages is CaptureMode.NONE and policy.inputs is CaptureMode.REDACTED
    assert policy.metadata is CaptureMode.REDACTED
    monkeypatch.setenv("APPSDK_CAPTURE", "inputs=full,completions=metadata")
    policy = Policy.from_env()
    assert policy.inputs is CaptureMode.FULL and policy.completions is CaptureMode.METADATA
    assert Policy.from_env(inputs="redacted").inputs is CaptureMode.REDACTED
    monkeypatch.setenv("APPSDK_CAPTURE", "full")
    assert Policy.from_env().feedback is CaptureMode.FULL


@pytest.mark.parametrize("value", ["everything", "inputs=all", "prompts=full"])
def test_bad_capture_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("APPSDK_CAPTURE", value)
    with pytest.raises(ConfigError, match="APPSDK_CAPTURE"):
        Policy.from_env()


def test_bad_policy_in_code_raises_naming_the_field() -> None:
    with pytest.raises(ValueError, match="inputs"):
        Policy(inputs="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="EMP"):
        Policy(patterns={"EMP": "EMP-[0-9"})


def test_secret_keys_are_replaced_whatever_they_hold() -> None:
    value = {"password": "plain words", "input_tokens": 12, "token": None}
    rendered = Policy().render("inputs", value)
    assert json.loads(rendered or "") == {
        "password": "[REDACTED:SECRET]",
        "input_tokens": 12,
        "token": None,
    }
    # full is what the application asked for: everything as given (as langfuse.observe does).
    assert json.loads(Policy.full().render("inputs", value) or "") == value
