from __future__ import annotations

import base64
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appsdk import Policy
from appsdk.redaction import BUILTIN_LABELS, Redactor, is_secret_key, luhn_ok
from tests.secrets_strategies import (
    HYPHEN_LOOKALIKES,
    WORDS,
    ZERO_WIDTH,
    api_keys,
    prose_with,
    secrets,
    sensitive_part,
)

LABEL = re.compile(r"\[REDACTED:([A-Z_]+)\]")


@given(st.data(), st.lists(secrets(), min_size=1, max_size=4))
@settings(max_examples=int(os.environ.get("REDACTION_EXAMPLES", "400")), deadline=None)
def test_every_planted_secret_is_redacted(
    data: st.DataObject, planted: list[tuple[str, str]]
) -> None:
    text = data.draw(prose_with([value for _, value in planted]))
    redacted = Redactor().redact(text)
    unlabelled = LABEL.sub("", redacted)  # a bearer token may read "URL_CREDENTI"
    for kind, value in planted:
        assert sensitive_part(kind, value) not in unlabelled, (kind, value, redacted)
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
        ("accessToken", True),
        ("privateKey", True),
        ("client-secret", True),
        ("apiKey", True),
        ("refreshToken", True),
        ("clientSecret", True),
        ("X-Api-Key", True),
        ("credentials_count", True),  # "credential" is enough under the default policy
        ("input_tokens", False),
        ("output_tokens", False),
        ("total_tokens", False),
        ("prompt_tokens", False),
        ("inputTokens", False),
        ("maxTokens", False),
        ("max_tokens", False),
        ("tokenizer", False),
        ("author", False),
        ("keyword", False),
        ("monkey", False),
    ],
)
def test_secret_looking_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_a_cut_off_private_key_is_still_redacted() -> None:
    text = "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert "MIIEv" not in Redactor().redact(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URL credentials without a user name, and with "#" and "/" in the password
        (
            "cache redis://:pw@host:6379/0 up",
            "cache redis://[REDACTED:URL_CREDENTIALS]@host:6379/0 up",
        ),
        (
            "dsn postgres://u:p#ss/w0rd@db:5432/x ok",
            "dsn postgres://[REDACTED:URL_CREDENTIALS]@db:5432/x ok",
        ),
        (  # host:port, then an email: no credentials
            "see https://example.com:8080/a?to=bob@example.com",
            "see https://example.com:8080/a?to=[REDACTED:EMAIL]",
        ),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: [REDACTED:BASIC_AUTH]"),
        ("header Basic dXNlcjpwYXNzd29yZA== sent", "header [REDACTED:BASIC_AUTH] sent"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0x\n=AbCd\n"
            "-----END PGP PRIVATE KEY BLOCK----- done",
            "[REDACTED:PGP_PRIVATE_KEY] done",
        ),
        (
            "pem:abc-----BEGIN RSA PRIVATE KEY-----\nMIIEpA\n-----END RSA PRIVATE KEY----- ok",
            "pem:abc[REDACTED:PRIVATE_KEY] ok",
        ),
        ("x-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN", "x[REDACTED:PRIVATE_KEY]"),
        ("use sk_live_51H8xYzAbCdEfGhIjKlMn now", "use [REDACTED:STRIPE_KEY] now"),
        ("use rk_live_51H8xYzAbCdEfGhIjKlMn now", "use [REDACTED:STRIPE_KEY] now"),
        ("use sk_test_4eC39HqLyjWDarjtT1zdp7dc now", "use [REDACTED:STRIPE_KEY] now"),
        ("hook whsec_abcdefghijklmnopqrstuvwxyz012345", "hook [REDACTED:STRIPE_KEY]"),
        ("card 4111_1111_1111_1111 on file", "card [REDACTED:CARD] on file"),
        ("4111111111111111", "[REDACTED:CARD]"),  # an int, as the policy passes one
        (
            "GET https://api.example.com/v1/x?api-key=abc123&page=2&api_key=zz9&token=t0k",
            "GET https://api.example.com/v1/x?api-key=[REDACTED:SECRET]&page=2"
            "&api_key=[REDACTED:SECRET]&token=[REDACTED:SECRET]",
        ),
        (
            "https://h/p?access_token=a1&key=k2&sig=s3&signature=s4#top",
            "https://h/p?access_token=[REDACTED:SECRET]&key=[REDACTED:SECRET]"
            "&sig=[REDACTED:SECRET]&signature=[REDACTED:SECRET]#top",
        ),
        ("https://h/p?max_tokens=100&keyword=cats", None),
        ("OPENAI_API_KEY=abc123 python app.py", "OPENAI_API_KEY=[REDACTED:SECRET] python app.py"),
        # not keys, not cards, not phones
        ("Basic concepts: tokens, prompts and completions.", None),
        ("the bearer instruments are gone", None),
        ("pk_live_51H8xYzAbCdEfGhIjKlMn is publishable", None),
        ("logged 2024-07-18 12:30:00.123 UTC, 2024-07-18T12:30:00Z", None),
        ("id 8b87e9fd-6808-4782-8873-426614174000 and c271d4155550100f0f31e325b8e1b49", None),
        ("took 1732870000123 ms since 1732870000; v10.11.12, 2024.10.1", None),
    ],
)
def test_detections_keep_the_text_around_them(text: str, expected: str | None) -> None:
    assert Redactor().redact(text) == (text if expected is None else expected)


def test_a_large_int_is_redacted_as_a_card_by_the_policy() -> None:
    rendered = Policy().render("inputs", {"n": 4111111111111111, "small": 12})
    assert json.loads(rendered or "") == {"n": "[REDACTED:CARD]", "small": 12}


def test_a_query_secret_in_a_client_url_keeps_the_url_readable() -> None:
    url = "https://10.0.0.7:8443/v1/chat?api_key=sk-abc&model=m1"
    redacted = Redactor().redact_repeated(url, frozenset({"IP_ADDRESS"}))
    assert redacted == "https://10.0.0.7:8443/v1/chat?api_key=[REDACTED:SECRET]&model=m1"


@pytest.mark.parametrize("mark", ZERO_WIDTH)
def test_a_zero_width_character_inside_a_key_does_not_hide_it(mark: str) -> None:
    for key in ("sk-proj-abcdefghijklmnopqrstuvwx", "AKIAIOSFODNN7EXAMPLE", "4111111111111111"):
        for position in (1, 2, len(key) - 1):
            text = f"key {key[:position]}{mark}{key[position:]} end"
            redacted = Redactor().redact(text)
            assert redacted.startswith("key [REDACTED:") and redacted.endswith("] end"), redacted
            assert key[-6:] not in redacted


@pytest.mark.parametrize("hyphen", HYPHEN_LOOKALIKES)
def test_a_look_alike_hyphen_inside_a_key_does_not_hide_it(hyphen: str) -> None:
    for key in ("sk-proj-abcdefghijklmnopqrstuvwx", "sk-liveabcdefghijklmnopqrstu", "415-555-0100"):
        text = f"use {key.replace('-', hyphen)}."
        assert Redactor().redact(text) in ("use [REDACTED:API_KEY].", "use [REDACTED:PHONE].")


def test_zero_width_and_dashes_escaped_as_json_do_not_hide_a_key() -> None:
    for text in ("A\u200bKIAIOSFODNN7EXAMPLE", "sk\u2011proj\u2011abcdefghijklmnopqrstu"):
        assert json.loads(Redactor().redact(json.dumps(f"key {text}."))).startswith(
            "key [REDACTED:"
        )


@pytest.mark.parametrize(
    "plain",
    [
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
        "AKIAIOSFODNN7EXAMPLE",
        'config: {"api_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t"}',
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ],
)
def test_the_base64_of_a_key_is_a_key(plain: str) -> None:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(plain.encode()).decode()
        redacted = Redactor().redact(f"blob {encoded} end")
        assert re.fullmatch(r"blob \[REDACTED:[A-Z_]+\] end", redacted), redacted


@given(st.lists(st.sampled_from(WORDS), max_size=12), st.data())
@settings(max_examples=200, deadline=None)
def test_text_without_secrets_stays_byte_identical_with_zero_width_characters(
    words: list[str], data: st.DataObject
) -> None:
    text = " ".join(words)
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(0, len(text)))
        mark = data.draw(st.sampled_from(ZERO_WIDTH + HYPHEN_LOOKALIKES))
        text = text[:position] + mark + text[position:]
    assert Redactor().redact(text) == text


def test_a_replacement_covers_every_original_character_of_an_evasion() -> None:
    redactor = Redactor(style="pseudonym", key=b"k")
    for hidden in ("\u200b", "\\u200b", "\ufeff\u200d", "\\u2011"):
        text = f"key sk-proj-abcdefghij{hidden}klmnopqrstuvwx end"
        assert re.fullmatch(r"key \[API_KEY:[0-9a-f]{8}\] end", redactor.redact(text))


@given(api_keys(), st.data())
@settings(max_examples=300, deadline=None)
def test_hidden_characters_in_a_key_are_redacted_with_it_and_nothing_else(
    key: str, data: st.DataObject
) -> None:
    hyphen = data.draw(st.sampled_from(["-", *HYPHEN_LOOKALIKES, "\\u2011"]))
    positions = data.draw(st.sets(st.integers(1, len(key) - 1), min_size=1, max_size=3))
    marks = st.sampled_from([*ZERO_WIDTH, "\\u200b", "\\ufeff"])
    hidden = "".join(
        (data.draw(marks) if index in positions else "") + (hyphen if char == "-" else char)
        for index, char in enumerate(key)
    )
    redacted = Redactor().redact(f"before \u00e9 {hidden} after")
    assert re.fullmatch(r"before \u00e9 \[REDACTED:[A-Z_]+\] after", redacted), redacted
