"""The redactor against corpora: identifiers it must leave alone, and hostile input.

Speed is measured by ``benchmarks/redaction.py``; here only what comes out is checked.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Callable

import pytest

from appsdk.redaction import Redactor, luhn_ok

COUNT = 10_000


def _epoch(rng: random.Random, scale: int) -> str:
    # 2000-01-01 to 2100-01-01, in seconds or milliseconds
    return str(rng.randrange(946_684_800 * scale, 4_102_444_800 * scale))


def _version(rng: random.Random) -> str:
    major = rng.choice([rng.randrange(100), rng.randrange(2000, 2100)])
    return f"{rng.choice(['', 'v'])}{major}.{rng.randrange(100)}.{rng.randrange(1000)}"


IDENTIFIERS: dict[str, Callable[[random.Random], str]] = {
    "span id (16 hex)": lambda rng: f"{rng.getrandbits(64):016x}",
    "trace id (32 hex)": lambda rng: f"{rng.getrandbits(128):032x}",
    "uuid4": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "uuid4 without dashes": lambda rng: uuid.UUID(int=rng.getrandbits(128), version=4).hex,
    "request id": lambda rng: f"req_{rng.getrandbits(96):024x}",
    "completion id": lambda rng: f"chatcmpl-{rng.getrandbits(128):032x}",
    "md5": lambda rng: hashlib.md5(rng.randbytes(16)).hexdigest(),
    "sha1": lambda rng: hashlib.sha1(rng.randbytes(16)).hexdigest(),
    "sha256": lambda rng: hashlib.sha256(rng.randbytes(16)).hexdigest(),
    "version": _version,
    "date and time": lambda rng: (
        f"{rng.randrange(1990, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        f"{rng.choice([' ', 'T'])}{rng.randrange(24):02d}:{rng.randrange(60):02d}"
        f":{rng.randrange(60):02d}{rng.choice(['', '.123', 'Z', '+02:00'])}"
    ),
    "epoch seconds": lambda rng: _epoch(rng, 1),
    "epoch milliseconds": lambda rng: _epoch(rng, 1000),
}


@pytest.mark.parametrize("kind", IDENTIFIERS)
def test_identifiers_pass_untouched(kind: str) -> None:
    generate = IDENTIFIERS[kind]
    rng = random.Random(f"appsdk-{kind}")
    redact = Redactor().redact
    changed = []
    for _ in range(COUNT):
        value = generate(rng)
        for text in (value, f"request {value} failed"):
            if redact(text) != text:
                changed.append((text, redact(text)))
    assert not changed, f"{len(changed)} changed, e.g. {changed[:3]}"


@pytest.mark.parametrize(
    "phone",
    [
        "+1 415 555 0100",
        "(415) 555-0100",
        "415-555-0100",
        "415.555.0100",
        "+1 (415) 555-0100",
        "+44 20 7946 0958",
        "+4915112345678",
        "020 7946 0958",
        "4155550100",
    ],
)
def test_real_phone_numbers_are_caught(phone: str) -> None:
    for text, expected in (
        (phone, "[REDACTED:PHONE]"),
        (f"call {phone} today.", "call [REDACTED:PHONE] today."),
        (f"tel:{phone}", "tel:[REDACTED:PHONE]"),
    ):
        assert Redactor().redact(text) == expected


def test_a_phone_next_to_a_card_is_two_findings() -> None:
    text = "+44 20 7946 0958 4111 1111 1111 1111"
    assert Redactor().redact(text) == "[REDACTED:PHONE] [REDACTED:CARD]"


def _numbers(rng: random.Random) -> str:
    text = " ".join(str(rng.randrange(1, 10 ** rng.randint(1, 20))) for _ in range(600))
    return text[: text.rfind(" ", 0, 5_600)]


HOSTILE: dict[str, str] = {
    "one digit run": "".join(random.Random(1).choice("0123456789") for _ in range(100_000)),
    "digits and '-'": "1-" * 50_000,
    "digits and '.'": "1." * 50_000,
    "digits and ' '": "1 " * 50_000,
    "'sk- ' repeated": "sk- " * 75_000,
    "'eyJ' repeated": "eyJ" * 100_000,
    "'eyJa.' repeated": "eyJa." * 60_000,
    "'-----BEGIN' repeated": "-----BEGIN" * 30_000,
    "'a@' repeated": "a@" * 100_000,
    "'@' repeated": "@" * 300_000,
    "deep brackets": "(" * 100_000 + ")" * 100_000,
    "'://' repeated": "://" * 100_000,
    "':' repeated": ":" * 300_000,
    "'a:' repeated": "a:" * 100_000,
    "'x=' repeated": "x=" * 100_000,
    "zero-width spaces": "\u200b" * 100_000,
    "soft hyphens": "\u00ad" * 100_000,
    "tag characters": "\U000e0041" * 100_000,
    "escaped soft hyphens": "\\u00ad" * 50_000,
    "full-width 'sk- '": "\uff53\uff4b\uff0d " * 75_000,
    "'%41' repeated": "%41" * 100_000,
    "'%E2%80%8B' repeated": "%E2%80%8B" * 30_000,
    "'%' repeated": "%" * 300_000,
    "'x key:' repeated": "x key:" * 50_000,
    "'password'=' repeated": "password'=" * 30_000,
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_input_without_a_secret_comes_back_unchanged(kind: str) -> None:
    text = HOSTILE[kind]
    assert Redactor().redact(text) == text


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_secret_after_hostile_input_is_still_found(kind: str) -> None:
    text = HOSTILE[kind] + "\nmail ana@example.com, call 415-555-0100"
    redacted = Redactor().redact(text)
    assert redacted.endswith("\nmail [REDACTED:EMAIL], call [REDACTED:PHONE]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sk-" * 100_000, "[REDACTED:API_KEY]"),
        ("AKIA" * 75_000, "[REDACTED:AWS_KEY]"),
        ("eyJ" + "a" * 100_000 + "." + "b" * 100_000 + "." + "c" * 100_000, "[REDACTED:JWT]"),
        ("-----BEGIN RSA PRIVATE KEY-----\n" * 10_000, "[REDACTED:PRIVATE_KEY]"),
        ("password=" * 30_000, "password=[REDACTED:SECRET]"),
        ("password: " * 30_000, "password: [REDACTED:SECRET] "),  # not its last blank
    ],
)
def test_hostile_input_that_is_one_secret_is_redacted_whole(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_numbers_printed_as_text() -> None:
    text = _numbers(random.Random(7))
    redacted = Redactor().redact(text)
    assert set(re.findall(r"\[REDACTED:(\w+)\]", redacted)) == {"PHONE", "CARD"}
    for number in re.findall(r"(?<![\d\]])\d+(?![\d\[])", redacted):
        # What stays is not a bare phone (10-15 digits, not a timestamp) nor a card.
        timestamp = 946_684_800 <= int(number) < 4_102_444_800 or (
            946_684_800_000 <= int(number) < 4_102_444_800_000
        )
        if not timestamp:
            assert not 10 <= len(number) <= 15, number
            assert not (13 <= len(number) <= 19 and number[0] in "23456" and luhn_ok(number))
    assert Redactor().redact(redacted) == redacted
