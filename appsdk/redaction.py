"""Built-in secret and PII detectors, and the replacement styles.

Speed comes from never running a detector on text that cannot hold its secret: each detector
is keyed by a literal its matches must contain (``@``, ``sk-``, ``AKIA``, ``://``, a digit ...),
found with ``str.find`` (a C substring search), and its pattern runs only at those positions.
Digit-shaped secrets (cards, phones, SSNs, IPv4, IBAN) come from one scan for digit runs that is
skipped entirely when the text has no digit. A naive alternation of the same regexes scans
2-3 MB/s; this reaches the throughputs in docs/performance.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["BUILTIN_LABELS", "Finding", "Redactor", "is_secret_key", "luhn_ok"]

ReplacementStyle = Literal["label", "pseudonym"]


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret found in a text: where, and which kind (never the value itself)."""

    start: int
    end: int
    label: str


_NOT_BEFORE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_LOCAL_PART = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


# Detectors anchored at a literal prefix: (prefix, pattern matched at the prefix, label).
_PREFIXED: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (prefix, re.compile(pattern, flags), label)
    for prefix, pattern, flags, label in (
        ("sk-lf-", r"sk-lf-[A-Za-z0-9-]{8,}", 0, "LANGFUSE_KEY"),
        ("pk-lf-", r"pk-lf-[A-Za-z0-9-]{8,}", 0, "LANGFUSE_KEY"),
        ("sk-", r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{16,}", 0, "API_KEY"),
        ("AKIA", r"AKIA[0-9A-Z]{16}", 0, "AWS_KEY"),
        ("ASIA", r"ASIA[0-9A-Z]{16}", 0, "AWS_KEY"),
        ("ghp_", r"ghp_[A-Za-z0-9]{20,}", 0, "GITHUB_TOKEN"),
        ("gho_", r"gho_[A-Za-z0-9]{20,}", 0, "GITHUB_TOKEN"),
        ("ghs_", r"ghs_[A-Za-z0-9]{20,}", 0, "GITHUB_TOKEN"),
        ("ghu_", r"ghu_[A-Za-z0-9]{20,}", 0, "GITHUB_TOKEN"),
        ("github_pat_", r"github_pat_[A-Za-z0-9_]{20,}", 0, "GITHUB_TOKEN"),
        ("xox", r"xox[abposre]-[A-Za-z0-9-]{10,}", 0, "SLACK_TOKEN"),
        ("AIza", r"AIza[0-9A-Za-z_-]{30,}", 0, "GOOGLE_API_KEY"),
        ("eyJ", r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", 0, "JWT"),
        ("Bearer", r"Bearer\s+[A-Za-z0-9._~+/=-]{6,}", 0, "BEARER_TOKEN"),
        ("bearer", r"bearer\s+[A-Za-z0-9._~+/=-]{6,}", 0, "BEARER_TOKEN"),
        ("BEARER", r"BEARER\s+[A-Za-z0-9._~+/=-]{6,}", 0, "BEARER_TOKEN"),
        (
            "-----BEGIN",
            # A key cut off before its END line is still a key: redact to the end.
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|.*)",
            re.DOTALL,
            "PRIVATE_KEY",
        ),
    )
)
# Each prefix is searched for by a shorter literal it shares with others ("k-" for sk-, pk-lf-),
# so a text costs one substring scan per gate rather than one per detector.
_GATES = ("k-", "IA", "_", "xox", "AIza", "eyJ", "earer", "EARER", "-----")


def _gate_of(prefix: str) -> tuple[str, int]:
    for gate in _GATES:
        offset = prefix.find(gate)
        if offset != -1:
            return gate, offset
    raise AssertionError(f"no gate for {prefix}")


_BY_GATE: dict[str, list[tuple[int, str, re.Pattern[str], str]]] = {}
for _prefix, _pattern, _label in _PREFIXED:
    _gate, _offset = _gate_of(_prefix)
    _BY_GATE.setdefault(_gate, []).append((_offset, _prefix, _pattern, _label))
_DIGITS_TO_NUL = str.maketrans({**dict.fromkeys("0123456789", "\x00"), "\x00": "\x01"})

_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL_CREDENTIALS = re.compile(r"[^\s/?#@:\"']+:[^\s/?#@\"']+(?=@)")
# Digit runs are found in a copy of the text whose digits are all NUL: a pattern that starts
# with a literal is searched for by SRE's fast literal scan, a digit class is not.
_DIGIT_RUN = re.compile("\x00[\x00().\\- ]*\x00")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_SSN = re.compile(r"\d{3}-\d{2}-\d{4}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?")
_CARD_CHARS = frozenset("0123456789 -")
# For short texts one regex search that rules every detector out is cheaper than the per-trigger
# scans; for long texts the per-trigger scans are faster than any alternation.
_SHORT_TEXT = 512
_LITERAL_TRIGGER = re.compile("|".join([re.escape(t) for t in _GATES] + ["@", "://"]))
_ANY_TRIGGER = re.compile(_LITERAL_TRIGGER.pattern + "|[0-9]|::|[0-9A-Fa-f]:[0-9A-Fa-f:]")

BUILTIN_LABELS = frozenset(
    {label for _, _, label in _PREFIXED}
    | {"EMAIL", "URL_CREDENTIALS", "IP_ADDRESS", "SSN", "CARD", "PHONE", "IBAN", "SECRET"}
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number passes."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_end(text: str, start: int) -> int | None:
    """Where a valid IBAN starting at ``start`` ends; the pattern may take a following token."""
    match = _IBAN.match(text, start)
    if match is None:
        return None
    candidate = match.group()
    while len(candidate.replace(" ", "")) >= 15:
        if _iban_ok(candidate):
            return start + len(candidate)
        candidate = candidate[:-1].rstrip()
    return None


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _classify_digits(segment: str) -> str | None:
    digits = "".join(c for c in segment if c.isdigit())
    count = len(digits)
    if "." in segment:
        ip = _IPV4.fullmatch(segment)
        if ip is not None and all(int(part) <= 255 for part in ip.groups()):
            return "IP_ADDRESS"
    if count == 9 and _SSN.fullmatch(segment):
        return "SSN"
    if 13 <= count <= 19 and _CARD_CHARS.issuperset(segment) and luhn_ok(digits):
        return "CARD"
    if 10 <= count <= 15 or (count >= 7 and count <= 15 and segment.startswith("+")):
        return "PHONE"
    return None


_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "access_key",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "session_token",
    "bearer",
    "signature",
    "x_api_key",
)
_SECRET_KEY_EXACT = frozenset({"token", "auth", "pwd", "pass", "key", "session_key", "jwt"})
_secret_key_cache: dict[str, bool] = {}


def is_secret_key(key: str, extra: Sequence[str] = ()) -> bool:
    """True for names like ``password``, ``api_key``, ``Authorization``; not ``input_tokens``."""
    cached = _secret_key_cache.get(key)
    if cached is not None and not extra:
        return cached
    name = key.lower().replace("-", "_")
    secret = (
        name in _SECRET_KEY_EXACT
        or name.endswith("_token")
        or any(part in name for part in _SECRET_KEY_PARTS)
        or any(part.lower() in name for part in extra)
    )
    if not extra and len(_secret_key_cache) < 4096:
        _secret_key_cache[key] = secret
    return secret


class Redactor:
    """Finds secrets and PII in text and replaces them, by label or keyed pseudonym.

    Args:
        style: ``label`` gives ``[REDACTED:EMAIL]``; ``pseudonym`` gives ``[EMAIL:3f9a1c2b]``,
            an HMAC of the value under ``key``, stable so analytics can still group.
        key: the HMAC key for pseudonyms.
        patterns: the application's own ``(label, regex)`` rules.
        callables: the application's own functions, each taking and returning the text.

    Example:
        >>> Redactor().redact("mail bob@example.com")
        'mail [REDACTED:EMAIL]'
    """

    def __init__(
        self,
        *,
        style: ReplacementStyle = "label",
        key: bytes = b"",
        patterns: Sequence[tuple[str, re.Pattern[str]]] = (),
        callables: Sequence[Callable[[str], str]] = (),
    ) -> None:
        self.style = style
        self._key = key
        self._clean_cache: dict[frozenset[str], set[str]] = {}
        self._patterns = tuple(patterns)
        self._callables = tuple(callables)

    def find(self, text: str) -> list[Finding]:
        """Every secret in ``text``, sorted, without overlaps."""
        found: list[Finding] = []
        find = text.find
        if len(text) > _SHORT_TEXT or _LITERAL_TRIGGER.search(text) is not None:
            self._find_literal_anchored(text, found)
        masked = text.translate(_DIGITS_TO_NUL)
        if "\x00" in masked:
            self._digit_runs(text, masked, found)
        at = find(":")
        while at != -1:
            at = self._ipv6_at(text, at, found)
            at = find(":", at + 1)
        for label, custom in self._patterns:
            found.extend(Finding(m.start(), m.end(), label) for m in custom.finditer(text))
        if len(found) > 1:
            found.sort(key=lambda f: (f.start, -f.end))
            merged = [found[0]]
            for finding in found[1:]:
                last = merged[-1]
                if finding.start >= last.end:
                    merged.append(finding)
                elif finding.end > last.end:
                    # Overlapping detections: redact their union, never leave a tail behind.
                    merged[-1] = Finding(last.start, finding.end, last.label)
            return merged
        return found

    def _find_literal_anchored(self, text: str, found: list[Finding]) -> None:
        find = text.find
        for gate, detectors in _BY_GATE.items():
            at = find(gate)
            while at != -1:
                for offset, prefix, pattern, label in detectors:
                    start = at - offset
                    if (
                        start >= 0
                        and text.startswith(prefix, start)
                        and (start == 0 or text[start - 1] not in _NOT_BEFORE)
                    ):
                        match = pattern.match(text, start)
                        if match is not None:
                            found.append(Finding(start, match.end(), label))
                            break
                at = find(gate, at + 1)
        at = find("@")
        while at != -1:
            self._email_at(text, at, found)
            at = find("@", at + 1)
        at = find("://")
        while at != -1:
            match = _URL_CREDENTIALS.match(text, at + 3)
            if match is not None:
                found.append(Finding(match.start(), match.end(), "URL_CREDENTIALS"))
            at = find("://", at + 3)

    @staticmethod
    def _email_at(text: str, at: int, found: list[Finding]) -> None:
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _LOCAL_PART:
            start -= 1
        while start < at and text[start] == ".":
            start += 1
        if start == at:
            return
        match = _EMAIL_DOMAIN.match(text, at + 1)
        if match is not None:
            found.append(Finding(start, match.end(), "EMAIL"))

    @staticmethod
    def _ipv6_at(text: str, at: int, found: list[Finding]) -> int:
        start, end = at, at + 1
        while start > 0 and text[start - 1] in _HEX_OR_COLON:
            start -= 1
        while end < len(text) and text[end] in _HEX_OR_COLON:
            end += 1
        candidate = text[start:end]
        before_ok = start == 0 or text[start - 1] not in _NOT_BEFORE
        after_ok = end == len(text) or text[end] not in _NOT_BEFORE
        if candidate.count(":") >= 2 and before_ok and after_ok:
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                return end
            found.append(Finding(start, end, "IP_ADDRESS"))
        return end

    def _digit_runs(self, text: str, masked: str, found: list[Finding]) -> None:
        for run in _DIGIT_RUN.finditer(masked):
            start, end = run.span()
            if (
                start >= 2
                and text[start - 2 : start].isupper()
                and text[start - 2 : start].isascii()
            ):
                iban_end = _iban_end(text, start - 2)
                if iban_end is not None:
                    found.append(Finding(start - 2, iban_end, "IBAN"))
                    # The same run may go on past the IBAN with another number.
                    start = iban_end
                    while start < end and not text[start].isdigit():
                        start += 1
            if end - start < 6:
                continue
            if start > 0 and text[start - 1] in "+(":
                start -= 1
            self._classify_run(text, start, end, found)

    @staticmethod
    def _classify_run(text: str, start: int, end: int, found: list[Finding]) -> None:
        # Runs joined by spaces may hold several secrets ("555-123-4567 555-987-6543") or one
        # spaced one ("4111 1111 1111 1111"): try the longest group of tokens first.
        tokens = [
            (m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])
        ]
        i = 0
        while i < len(tokens):
            for j in range(len(tokens), i, -1):
                # Sentence punctuation around a number is not part of it: "4111...1111."
                first, last = tokens[i][0], tokens[j - 1][1]
                while first < last and text[first] in ".-)(":
                    if text[first] == "(" and ")" in text[first:last]:
                        break
                    first += 1
                while last > first and text[last - 1] in ".-()":
                    if text[last - 1] == ")" and "(" in text[first:last]:
                        break
                    last -= 1
                label = _classify_digits(text[first:last])
                if label is not None:
                    found.append(Finding(first, last, label))
                    i = j
                    break
            else:
                i += 1

    def replacement(self, label: str, value: str) -> str:
        if self.style == "pseudonym":
            digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:8]
            return f"[{label}:{digest}]"
        return f"[REDACTED:{label}]"

    def redact_repeated(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """:meth:`redact` for values that recur (URLs, methods, hosts on every HTTP span).

        Short texts found clean are remembered (only clean ones: no secret is ever kept), so
        the next span with the same value pays a set lookup instead of a scan.
        """
        clean = self._clean_cache.get(keep)
        if clean is None:
            clean = self._clean_cache.setdefault(keep, set())
        if text in clean:
            return text
        redacted = self.redact(text, keep)
        if redacted == text and len(text) <= 256:
            if len(clean) >= 4096:
                clean.clear()
            clean.add(text)
        return redacted

    def redact(self, text: str, keep: frozenset[str] = frozenset()) -> str:
        """``text`` with every secret replaced, then the application's callables applied.

        Args:
            keep: labels not to replace here (e.g. ``IP_ADDRESS`` in a server address).
        """
        size = len(text)
        if size >= 6 and (size > _SHORT_TEXT or _ANY_TRIGGER.search(text) is not None):
            findings = self.find(text)
            if keep:
                findings = [f for f in findings if f.label not in keep]
            if findings:
                parts: list[str] = []
                last = 0
                for f in findings:
                    parts.append(text[last : f.start])
                    parts.append(self.replacement(f.label, text[f.start : f.end]))
                    last = f.end
                parts.append(text[last:])
                text = "".join(parts)
        for function in self._callables:
            text = function(text)
        return text
