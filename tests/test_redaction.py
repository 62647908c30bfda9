from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appsdk.redaction import BUILTIN_LABELS, Redactor, is_secret_key, luhn_ok
from tests.secrets_strategies import prose_with, secrets, sensitive_part

LABEL = re.compile(r"\[REDACTED:([A-Z_]+)\]")


@given(st.data(), st.lists(secrets(), min_size=1, max_size=4))
@settings(max_examples=int(os.environ.get("REDACTION_EXAMPLES", "400")), deadline=None)
def test_every_planted_secret_is_redacted(data: st.DataObject, planted: list[tuple[str, str]]):
    text = data.draw(prose_with([value for _, value in planted]))
    redacted = Redactor().redact(text)
    for kind, value in planted:
        assert sensitive_part(kind, value) not in redacted, (kind, value, redacted)
    assert set(LABEL.findall(redacted)) <= BUILTIN_LABELS


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_redaction_never_fails_and_is_idempotent(text: str) -> None:
    redactor = Redactor()
    once = redactor.redact(text)
    assert redactor.redact(once) == once


@pytest.mark.parametrize(
    "clean",
    [
        "In 2025 the team met at 10:30 to review version 1.2.3 of the plan.",
        "Use std::vector and a risk-assessment framework; see page 42.",
        "Order #12345 shipped on 2024-06-01 to Berlin.",
        "Basic concepts: tokens, prompts and completions.",
    ],
)
def test_ordinary_prose_is_left_alone(clean: str) -> None:
    assert Redactor().redact(clean) == clean


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    first = Redactor(style="pseudonym", key=b"k1")
    second = Redactor(style="pseudonym", key=b"k2")
    text = "write to ana@example.com"
    assert first.redact(text) == first.redact(text)
    assert re.fullmatch(r"write to \[EMAIL:[0-9a-f]{8}\]", first.redact(text))
    assert first.redact(text) != second.redact(text)


def test_custom_patterns_and_callables_run_after_the_builtins() -> None:
    redactor = Redactor(
        patterns=[("EMPLOYEE_ID", re.compile(r"EMP-\d{5}"))],
        callables=[lambda text: text.replace("Project Falcon", "[CODENAME]")],
    )
    assert (
        redactor.redact("EMP-12345 on Project Falcon, bob@example.com")
        == "[REDACTED:EMPLOYEE_ID] on [CODENAME], [REDACTED:EMAIL]"
    )


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("API_KEY", True),
        ("Authorization", True),
        ("x-api-key", True),
        ("session_token", True),
        ("cookie", True),
        ("client_secret", True),
        ("token", True),
        ("input_tokens", False),
        ("max_tokens", False),
        ("author", False),
        ("keyword", False),
    ],
)
def test_secret_looking_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_a_cut_off_private_key_is_still_redacted() -> None:
    text = "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert "MIIEv" not in Redactor().redact(text)


def test_pathological_input_stays_linear() -> None:
    redactor = Redactor()
    started = time.process_time()
    for text in ("a" * 50_000 + "@", "1-" * 25_000, ":" * 50_000, "sk-" * 20_000):
        redactor.redact(text)
    # generous: catastrophic backtracking would take minutes, not seconds
    assert time.process_time() - started < 20
