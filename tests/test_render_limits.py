"""Long texts under the default policy: cut at ``max_chars``, never leaving half a secret.

The policy scans only a bounded stretch past the cut (what lies beyond is never recorded), and
reuses the rendering of a text it has just rendered (nested observations pass one object on).
Both must record exactly what scanning the whole text and then cutting it records.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from appsdk import Policy
from appsdk.policy import SECRET_PLACEHOLDER

KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8J9k0" * 3
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "MIIEowIBAAKCAQEA" * 600
    + "\n-----END RSA PRIVATE KEY-----"
)


def reference(policy: Policy, text: str) -> str:
    """What the policy records: the whole text redacted, then cut."""
    redacted = policy.redact_text(text)
    limit = policy.engine.max_chars
    if len(redacted) > limit:
        return f"{redacted[:limit]}...[truncated {len(redacted) - limit} chars]"
    return redacted


def shown(recorded: str, limit: int) -> str:
    return re.sub(r"\.\.\.\[truncated \d+ chars\]$", "", recorded)[:limit]


def test_a_key_across_the_cut_is_redacted_not_halved() -> None:
    policy = Policy(max_chars=100)
    text = "x " * 45 + KEY + " tail" * 5000
    recorded = policy.render("outputs", text)
    assert recorded is not None
    assert "A1b2C3" not in recorded and "sk-proj" not in recorded
    assert recorded.startswith("x " * 45 + "[REDACTED:")
    assert shown(recorded, 100) == shown(reference(policy, text), 100)


def test_a_private_key_longer_than_the_stretch_scanned_is_redacted_to_the_cut() -> None:
    policy = Policy(max_chars=200)
    text = "config: " + PEM + " and more" * 20_000
    recorded = policy.render("inputs", text)
    assert recorded is not None
    assert "MIIEow" not in recorded
    assert "[REDACTED:PRIVATE_KEY]" in recorded


def test_a_megabyte_is_cut_with_the_count_of_what_was_dropped() -> None:
    policy = Policy(max_chars=20_000)
    text = "plain words " * 90_000
    recorded = policy.render("outputs", text)
    assert recorded == f"{text[:20_000]}...[truncated {len(text) - 20_000} chars]"


def test_the_same_text_twice_and_an_equal_copy_record_the_same() -> None:
    policy = Policy()
    text = "mail bob@example.com about " + "the report " * 100
    copy = "".join(list(text))
    assert copy is not text
    first = policy.render("outputs", text)
    assert policy.render("outputs", text) == first == policy.render("outputs", copy)
    assert first is not None and "bob@example.com" not in first
    nested = policy.render("inputs", {"args": [text], "kwargs": {"api_key": "x"}})
    assert nested == (
        '{"args": ["' + first + '"], "kwargs": {"api_key": "' + SECRET_PLACEHOLDER + '"}}'
    )


pieces = st.sampled_from(
    ["word ", "bob@example.com ", KEY + " ", "+44 20 7946 0958 ", "4111 1111 1111 1111 ", "\n"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(pieces, min_size=1, max_size=400), st.integers(min_value=1, max_value=300))
def test_what_is_shown_equals_redacting_everything_then_cutting(
    parts: list[str], limit: int
) -> None:
    policy = Policy(max_chars=limit)
    text = "".join(parts)
    recorded = policy.render("outputs", text)
    assert recorded is not None
    assert shown(recorded, limit) == shown(reference(policy, text), limit)
    assert "A1b2C3d4" not in recorded and "bob@example.com" not in recorded
