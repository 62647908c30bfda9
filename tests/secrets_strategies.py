"""Hypothesis strategies for secrets and PII of every built-in detector kind."""

from __future__ import annotations

import base64
import json
import string

from hypothesis import strategies as st

ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits


def _text(alphabet: str, min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = 0
        for index, char in enumerate(reversed(digits)):
            value = int(char)
            if index % 2:
                value = value * 2 - 9 if value > 4 else value * 2
            total += value
        if total % 10 == 0:
            return digits
    raise AssertionError


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "37", "6011"]))
    length = 15 if prefix == "37" else 16
    body = prefix + draw(_text(string.digits, length - 1 - len(prefix), length - 1 - len(prefix)))
    number = _luhn_complete(body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if not separator:
        return number
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(["DE", "GB", "FR", "NL", "ES"]))
    bban = draw(_text(string.ascii_uppercase + string.digits, 12, 26))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    if draw(st.booleans()):
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(_text(LOWER_ALNUM, 1, 12)) + draw(st.sampled_from(["", ".x", "+tag", "_y"]))
    domain = draw(_text(string.ascii_lowercase, 1, 10))
    tld = draw(st.sampled_from(["com", "org", "io", "co.uk", "de"]))
    return f"{local}@{domain}.{tld}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    area, mid, last = (draw(_text(string.digits, n, n)) for n in (3, 3, 4))
    return draw(
        st.sampled_from(
            [
                f"+1 ({area}) {mid}-{last}",
                f"{area}-{mid}-{last}",
                f"{area}.{mid}.{last}",
                f"+44 {area} {mid} {last}",
                f"({area}) {mid}-{last}",
                f"+49{area}{mid}{last}",
            ]
        )
    )


@st.composite
def jwts(draw: st.DrawFn) -> str:
    def part(payload: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    body = part({"sub": draw(_text(ALNUM, 1, 12))})
    signature = draw(_text(ALNUM + "-_", 10, 43))
    return f"{header}.{body}.{signature}"


@st.composite
def pems(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["", "RSA ", "EC ", "OPENSSH "]))
    body = draw(_text(ALNUM + "+/", 20, 120))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


@st.composite
def url_credentials(draw: st.DrawFn) -> str:
    user = draw(_text(string.ascii_lowercase, 1, 10))
    password = draw(_text(ALNUM, 6, 20))
    scheme = draw(st.sampled_from(["postgres", "https", "redis", "amqp"]))
    return f"{scheme}://{user}:{password}@db.internal:5432/app"


def api_keys() -> st.SearchStrategy[str]:
    return st.one_of(
        _text(ALNUM, 24, 48).map(lambda s: f"sk-proj-{s}"),
        _text(ALNUM, 32, 48).map(lambda s: f"sk-{s}"),
        st.uuids().map(lambda u: f"sk-lf-{u}"),
        st.uuids().map(lambda u: f"pk-lf-{u}"),
        _text(string.ascii_uppercase + string.digits, 16, 16).map(lambda s: f"AKIA{s}"),
        _text(ALNUM, 36, 36).map(lambda s: f"ghp_{s}"),
        _text(ALNUM + "_", 22, 60).map(lambda s: f"github_pat_{s}"),
        _text(ALNUM, 10, 30).map(lambda s: f"xoxb-1234567890-{s}"),
        _text(ALNUM + "_-", 35, 35).map(lambda s: f"AIza{s}"),
    )


def secrets() -> st.SearchStrategy[tuple[str, str]]:
    """``(kind, value)`` of every built-in detector kind."""
    return st.one_of(
        emails().map(lambda v: ("email", v)),
        phones().map(lambda v: ("phone", v)),
        cards().map(lambda v: ("card", v)),
        ibans().map(lambda v: ("iban", v)),
        _text(string.digits, 9, 9).map(lambda d: ("ssn", f"{d[:3]}-{d[3:5]}-{d[5:]}")),
        st.ip_addresses(v=4).map(lambda ip: ("ipv4", str(ip))),
        st.ip_addresses(v=6)
        .filter(lambda ip: str(ip).count(":") >= 3)
        .map(lambda ip: ("ipv6", str(ip))),
        jwts().map(lambda v: ("jwt", v)),
        _text(ALNUM + "._-", 12, 40).map(lambda t: ("bearer", f"Bearer {t}")),
        pems().map(lambda v: ("pem", v)),
        url_credentials().map(lambda v: ("url", v)),
        api_keys().map(lambda v: ("api_key", v)),
    )


def sensitive_part(kind: str, value: str) -> str:
    """The part of a planted value that must never be seen."""
    if kind == "bearer":
        return value.split(" ", 1)[1]
    if kind == "url":
        return value.split("://", 1)[1].split("@", 1)[0]
    if kind == "pem":
        return value.split("\n")[1]
    return value


WORDS = ["the", "report", "says", "please", "contact", "about", "order", "résumé", "ok", "—"]


@st.composite
def prose_with(draw: st.DrawFn, planted: list[str]) -> str:
    """Prose with the planted values as whitespace-separated tokens, maybe punctuated."""
    tokens = draw(st.lists(st.sampled_from(WORDS), max_size=8))
    for value in planted:
        position = draw(st.integers(0, len(tokens)))
        tail = draw(st.sampled_from(["", ".", ",", ";", ")"]))
        tokens.insert(position, value + tail)
    return " ".join(tokens)
