"""Leaks an attacker planting canaries found: secrets in headers and key-value text, under
secret names spelled as environment variables, hidden by invisible or full-width characters, by
percent-encoding, by base64 inside base64, and cards written as floats."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appsdk.redaction import Redactor, is_secret_key
from tests.secrets_strategies import (
    FULLWIDTH,
    INVISIBLE,
    WORDS,
    api_keys,
    cards,
    emails,
    fullwidth,
    percent_encoded,
)

EXAMPLES = int(os.environ.get("REDACTION_EXAMPLES", "300"))
SECRET = "[REDACTED:SECRET]"
CJK_PUNCTUATION = "\uff0c\u3002\uff05\uff08\uff09"  # full-width comma, stop, %, ( and )


def redact(text: str) -> str:
    return Redactor().redact(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Token abc123def456", f"Authorization: {SECRET}"),
        ("authorization: Bearer abcdef123456", "authorization: [REDACTED:BEARER_TOKEN]"),
        ("api-key: 0123abcd4567ef89", f"api-key: {SECRET}"),
        ("X-Api-Key: 0123abcd4567ef89", f"X-Api-Key: {SECRET}"),
        ("password: hunter2-secret", f"password: {SECRET}"),
        ("Cookie: session=abc123xyz; theme=dark", f"Cookie: {SECRET}"),
        ("Proxy-Authorization: Digest username=u, response=9f8e", f"Proxy-Authorization: {SECRET}"),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Token abc123def456\r\nAccept: */*",
            f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nAccept: */*",
        ),
        ("db:\n  host: x\n  password: hunter2\n", f"db:\n  host: x\n  password: {SECRET}\n"),
        ("- api_key: abc123 ", f"- api_key: {SECRET} "),
        ("user: bob, password: hunter2, host: db", f"user: bob, password: {SECRET}, host: db"),
        # Inside a JSON string or a Python repr, raw or with escaped line breaks
        (
            '["Authorization: Token abc123def456", "Accept: x"]',
            f'["Authorization: {SECRET}", "Accept: x"]',
        ),
        (
            '"GET /\\r\\nAuthorization: Token abc123def456\\r\\nAccept: x"',
            f'"GET /\\r\\nAuthorization: {SECRET}\\r\\nAccept: x"',
        ),
        ('{"h": "Cookie: sid=\\"abc\\"; x=1"}', f'{{"h": "Cookie: {SECRET}"}}'),
        # A quoted key and its value
        ("{'password': 'hunter2'}", f"{{'password': '{SECRET}'}}"),
        ('{"password": "hunter2", "user": "bob"}', f'{{"password": "{SECRET}", "user": "bob"}}'),
        ('{"pin": 1234, "otp": "123456"}', f'{{"pin": {SECRET}, "otp": "{SECRET}"}}'),
        ("{'DB_PASS': 'x y z'}", f"{{'DB_PASS': '{SECRET}'}}"),
        ("password: 'hunter2'", f"password: '{SECRET}'"),
        # Assignments with quotes and spaces
        ('password="hunter2"', f'password="{SECRET}"'),
        ("password = 'hunter2'", f"password = '{SECRET}'"),
        ('client_secret = "s3cr3t value"', f'client_secret = "{SECRET}"'),
        ("[client]\npassword = hunter2\n", f"[client]\npassword = {SECRET}\n"),
        ("$db = ['password' => 'hunter2'];", f"$db = ['password' => '{SECRET}'];"),
        ("export PGPASSWORD='pa ss'", f"export PGPASSWORD='{SECRET}'"),
    ],
)
def test_secrets_in_headers_and_key_value_text(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "clean",
    [
        "Note: the meeting moved to 10:30.\nHost: example.com",
        '{"input_tokens": 812, "max_tokens": 1024, "token_count": 3, "primary_key": "id"}',
        "{'password': None, 'token': null, 'key': True}",
        "if password == expected: return token",
        "token = tokenizer.encode(text)",
        "The key: keep prompts short. The password policy is strict.",
        "all 3 tests pass: keyboard: us, compass: north",
        # Code: annotations, calls, indexing, names assigned to names, comparisons
        "def f(self, key: bytes, token: str = '') -> None:",
        "    auth: httpx.Auth | None = None\n    secret: SecretStr = Field(default=None)",
        '{"secret_key": SecretStr(), "token": token, "api_key": os.environ["API_KEY"]}',
        "        self._session_token = session_token\n        key = cache.get(name)",
        "http://[::1]:4318/v1/traces and 12:30:00",
    ],
)
def test_text_that_only_looks_like_key_value_secrets_is_left_alone(clean: str) -> None:
    assert redact(clean) == clean


SECRET_NAMES = [
    "DB_PASS",
    "DB_PASSWORD",
    "SMTP_PWD",
    "PGPASS",
    "PGPASSWORD",
    "MYSQL_PWD",
    "signing_key",
    "SIGNING_SECRET",
    "client_secret",
    "encryption_key",
    "master_key",
    "private-key",
    "AWS_SECRET_ACCESS_KEY",
    "conn_str",
    "connection_string",
    "DATABASE_URL",
    "webhook_secret",
    "sessionid",
    "csrf_token",
    "csrftoken",
    "otp",
    "pin",
    "card_pin",
    "AccountKey",
    "hmacKey",
    "passcode",
    "db_pw",
    "Ocp-Apim-Subscription-Key",
]
NOT_SECRET_NAMES = [
    "input_tokens",
    "max_tokens",
    "token_count",
    "keyboard",
    "monkey",
    "passage",
    "compass",
    "bypass",
    "pass_through",
    "pinned",
    "spinner",
    "pin_memory",
    "primary_key",
    "sort_key",
    "cache_key",
    "public_key",
    "key_id",
    "session_id",
    "hotpot",
    "url",
    "keynote",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_as_environment_variables_spell_them(name: str) -> None:
    assert is_secret_key(name)
    # The name-led detectors find the value too: the names' endings are in their prefilters.
    for text in (f"{name}=abc123", f"{name}: abc123", f'{{"{name}": "abc123"}}'):
        assert "abc123" not in redact(text), text


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_names_that_contain_a_secret_word_are_not_secret(name: str) -> None:
    assert not is_secret_key(name)
    assert redact(f"{name}=abc123") == f"{name}=abc123"


# The invisible characters of the brief, a few of each range.
HIDDEN = [
    "\u00ad",
    "\u034f",
    "\u061c",
    "\u180e",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202e",
    "\u2061",
    "\u2062",
    "\u2064",
    "\u2066",
    "\u2069",
    "\ufe00",
    "\ufe0f",
    "\U000e0001",
    "\U000e0041",
    "\U000e007f",
]
KEYS = [
    "sk-proj-abcdefghijklmnopqrstuvwx",
    "AKIAIOSFODNN7EXAMPLE",
    "4111111111111111",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
]


@pytest.mark.parametrize("mark", HIDDEN)
def test_an_invisible_character_inside_a_key_does_not_hide_it(mark: str) -> None:
    for key in KEYS:
        for position in (1, 2, 3, len(key) - 1):
            hidden = f"{key[:position]}{mark}{key[position:]}"
            for tail in ("", " \u2019", " \U0001f600"):  # latin-1, UCS-2 and UCS-4 text
                text = f"key {hidden} end{tail}"
                assert redact(text) == "key [REDACTED:" + redact(key)[10:] + f" end{tail}"
            escaped = json.dumps(f"key {hidden} end")  # "\\u00ad", "\\udb40\\udc41"
            assert key[-6:] not in redact(escaped), escaped


def wide(text: str) -> str:
    """``text`` in full-width ASCII ("a" is U+FF41)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_full_width_ascii_reads_as_ascii() -> None:
    for text, label in (
        (wide("sk-proj-abcdefghijklmnopqrstuvwx"), "API_KEY"),
        (wide("4111111111111111"), "CARD"),
        ("4111 " + wide("1111") + " 1111 1111", "CARD"),
        (wide("bob@example.com"), "EMAIL"),
        ("bob" + wide("@") + "example.com", "EMAIL"),
        (wide("AKIAIOSFODNN7EXAMPLE"), "AWS_KEY"),
    ):
        for written in (text, json.dumps(text)[1:-1]):
            assert redact(f"see {written}, then") == f"see [REDACTED:{label}], then", written
    colon = wide(":")  # alone: Chinese text writes it everywhere, yet it is read as ":"
    assert redact(f"password{colon} hunter2") == f"password{colon} {SECRET}"


def test_a_replacement_covers_every_hidden_character() -> None:
    pseudonyms = Redactor(style="pseudonym", key=b"k")
    for hidden in ("\u00ad", "\U000e0041\U000e0042", "\\u00ad", "\\udb40\\udc41", "%C2%AD"):
        text = f"key sk-proj-abcdefghij{hidden}klmnopqrstuvwx end"
        assert re.fullmatch(r"key \[API_KEY:[0-9a-f]{8}\] end", pseudonyms.redact(text)), text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password%3Dhunter2", "password%3D[REDACTED:SECRET]"),
        ("q=password%3Dhunter2&x=1", "q=password%3D[REDACTED:SECRET]&x=1"),
        ("https://user:p%40ss@host/x", "https://[REDACTED:URL_CREDENTIALS]@host/x"),
        ("?api_key=sk%2Dproj%2Dabcdefghijklmnopqrstu", "?api_key=[REDACTED:SECRET]"),
        ("next=%2Fa%3Ftoken%253Dabc123%26x%3D1", "next=%2Fa%3Ftoken%253D[REDACTED:SECRET]%26x%3D1"),
        ("h=Authorization%3A%20Token%20abc123def", "h=Authorization%3A%20[REDACTED:SECRET]"),
        ("token%3A%20abc123def", "token%3A%20[REDACTED:SECRET]"),
        ("mail=bob%40example.com", "mail=[REDACTED:EMAIL]"),
        ("k=sk-%E2%80%8Bproj-abcdefghijklmnopqrstuvwx", "k=[REDACTED:API_KEY]"),
        ("grew 25%, then 30%AB testing; 100%", None),
        ("https://h/search?q=a%20b%2Fc&page=2", None),
    ],
)
def test_percent_encoding_does_not_hide_a_secret(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


@pytest.mark.parametrize("levels", [2, 3])
def test_base64_inside_base64_is_decoded(levels: int) -> None:
    for plain in ("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "OPENAI_API_KEY=AKIAIOSFODNN7EXAMPLE"):
        encoded = plain.encode()
        for _ in range(levels):
            encoded = base64.b64encode(encoded)
        redacted = redact(f"blob {encoded.decode()} end")
        assert re.fullmatch(r"blob \[REDACTED:[A-Z_]+\] end", redacted), redacted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111111111111111.0", "[REDACTED:CARD]"),
        ('{"n": 4111111111111111.0}', '{"n": [REDACTED:CARD]}'),
        ("card 5500005555555559.00 ok", "card [REDACTED:CARD] ok"),
        ("4.111111111111111e+15", "[REDACTED:CARD]"),
        ("[4.111111111111111E15, 1]", "[[REDACTED:CARD], 1]"),
        ("3.78282246310005e+14", "[REDACTED:CARD]"),  # 378282246310005, Amex
        # Not cards: a timestamp, a failing checksum, a fraction, too few digits
        ("took 1732870000123.0 ms", None),
        ("4111111111111112.0 and 4.111111111111112e+15", None),
        ("4111111111111111.5 and 4.1111111111111e+3", None),
        ("1.0e+15 2.5e+12", None),
    ],
)
def test_a_card_written_as_a_float(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)


@given(api_keys(), st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_a_key_with_invisible_characters_is_redacted_with_them(
    key: str, data: st.DataObject
) -> None:
    positions = data.draw(st.sets(st.integers(1, len(key) - 1), min_size=1, max_size=3))
    marks = st.sampled_from(INVISIBLE)
    hidden = "".join((data.draw(marks) if i in positions else "") + c for i, c in enumerate(key))
    if data.draw(st.booleans()):
        hidden = json.dumps(hidden)[1:-1]
    redacted = redact(f"before \u2014 {hidden} after")
    assert re.fullmatch(r"before \u2014 \[REDACTED:[A-Z_]+\] after", redacted), redacted


@given(st.one_of(api_keys(), cards(), emails()), st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_a_secret_written_in_full_width_is_redacted(secret: str, data: st.DataObject) -> None:
    wide = data.draw(fullwidth(secret))
    redacted = redact(f"value {wide} end")
    assert re.fullmatch(r"value \[REDACTED:[A-Z_]+\] end", redacted), redacted


@given(st.one_of(api_keys(), emails()), st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_a_percent_encoded_secret_is_redacted(secret: str, data: st.DataObject) -> None:
    encoded = data.draw(percent_encoded(secret))
    redacted = redact(f"x?q={encoded}&page=2")
    assert urllib.parse.unquote(encoded) not in urllib.parse.unquote(redacted), redacted
    assert redacted.endswith("&page=2")


@given(st.lists(st.sampled_from(WORDS), max_size=12), st.data())
@settings(max_examples=EXAMPLES, deadline=None)
def test_clean_text_with_invisible_and_full_width_characters_comes_back_unchanged(
    words: list[str], data: st.DataObject
) -> None:
    text = " ".join(words)
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(0, len(text)))
        mark = data.draw(st.sampled_from(INVISIBLE + FULLWIDTH[:20] + CJK_PUNCTUATION))
        text = text[:position] + mark + text[position:]
    for written in (text, json.dumps(text)):
        assert redact(written) == written
