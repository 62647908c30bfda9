"""Hypothesis strategies for secrets and PII of every built-in detector kind."""

from __future__ import annotations

import base64
import json
import string
import urllib.parse

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
    separator = draw(st.sampled_from(["", " ", "-", "_"]))
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
    # No user name (redis://:pw@host) and unescaped "#" or "/" in the password, as people
    # write them. (A password of digits then "/" with a user name reads as host:port/path.)
    user = draw(st.one_of(st.just(""), _text(string.ascii_lowercase, 1, 10)))
    password = draw(_text(string.ascii_letters, 1, 1)) + draw(_text(ALNUM + "#/", 5, 20))
    scheme = draw(st.sampled_from(["postgres", "https", "redis", "amqp"]))
    return f"{scheme}://{user}:{password}@db.internal:5432/app"


@st.composite
def query_secrets(draw: st.DrawFn) -> str:
    """A URL whose query carries a secret: only the value must go."""
    name = draw(
        st.sampled_from(
            ["api-key", "api_key", "apiKey", "token", "access_token", "key", "sig", "signature"]
        )
    )
    value = draw(_text(ALNUM + "-_.%", 8, 40))
    return f"https://api.example.com/v1/items?page=2&{name}={value}&sort=asc"


@st.composite
def basic_auth(draw: st.DrawFn) -> str:
    user = draw(_text(ALNUM, 1, 12))
    password = draw(_text(ALNUM + "!@#", 1, 20))
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@st.composite
def pgp_keys(draw: st.DrawFn) -> str:
    body = draw(_text(ALNUM + "+/", 20, 120))
    return (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
        f"{body}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----"
    )


ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
HYPHEN_LOOKALIKES = "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"
# Every character that renders as nothing and so may hide inside a key: soft hyphen, joiners,
# marks and isolates of bidirectional text, invisible operators, variation selectors, tags.
INVISIBLE = (
    ZERO_WIDTH
    + "\u00ad\u034f\u061c\u180e\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    + "\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufe00\ufe0e\ufe0f"
    + "\U000e0001\U000e0020\U000e0041\U000e007f\U000e0100"
)
FULLWIDTH = "".join(map(chr, range(0xFF01, 0xFF5F)))  # ASCII "!" ... "~" in full width


@st.composite
def fullwidth(draw: st.DrawFn, text: str) -> str:
    """``text`` with some (or all) of its printable ASCII written in full width."""
    wide = draw(st.sets(st.integers(0, len(text) - 1), min_size=1))
    return "".join(
        chr(ord(c) + 0xFEE0) if i in wide and "!" <= c <= "~" else c for i, c in enumerate(text)
    )


@st.composite
def percent_encoded(draw: st.DrawFn, text: str) -> str:
    """``text`` with some of its characters percent-encoded, maybe an invisible one added."""
    encoded = draw(st.sets(st.integers(0, len(text) - 1), min_size=1))
    chars = [f"%{ord(c):02X}" if i in encoded else c for i, c in enumerate(text)]
    if draw(st.booleans()):
        mark = draw(st.sampled_from(INVISIBLE))
        chars.insert(draw(st.integers(1, len(chars) - 1)), urllib.parse.quote(mark))
    return "".join(chars)


@st.composite
def evasions(draw: st.DrawFn) -> str:
    """An API key with a zero-width character inside, or its hyphens swapped for look-alikes."""
    key = draw(api_keys())
    if "-" in key and draw(st.booleans()):
        return key.replace("-", draw(st.sampled_from(HYPHEN_LOOKALIKES)))
    position = draw(st.integers(1, len(key) - 1))
    return key[:position] + draw(st.sampled_from(ZERO_WIDTH)) + key[position:]


@st.composite
def base64_secrets(draw: st.DrawFn) -> str:
    """The base64 of a key, alone or in a line of configuration."""
    key = draw(api_keys())
    plain = draw(st.sampled_from(["{}", "token: {}", "OPENAI_API_KEY={}\n", '{{"key": "{}"}}']))
    encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
    return encode(plain.format(key).encode()).decode()


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
        st.tuples(st.sampled_from(["sk", "rk"]), st.sampled_from(["live", "test"])).flatmap(
            lambda p: _text(ALNUM, 24, 99).map(lambda s: f"{p[0]}_{p[1]}_{s}")
        ),
        _text(ALNUM, 32, 32).map(lambda s: f"whsec_{s}"),
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
        query_secrets().map(lambda v: ("query", v)),
        basic_auth().map(lambda v: ("basic", v)),
        pgp_keys().map(lambda v: ("pem", v)),
        evasions().map(lambda v: ("evasion", v)),
        base64_secrets().map(lambda v: ("base64", v)),
    )


def sensitive_part(kind: str, value: str) -> str:
    """The part of a planted value that must never be seen."""
    if kind in ("bearer", "basic"):
        return value.split(" ", 1)[1]
    if kind == "url":
        return value.split("://", 1)[1].rsplit("@", 1)[0]
    if kind == "pem":
        return next(line for line in value.split("\n")[1:] if line)
    if kind == "query":
        return value.split("&")[1].split("=", 1)[1]
    if kind == "evasion":
        return value[-12:]
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
