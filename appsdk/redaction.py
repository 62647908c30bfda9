"""Built-in secret and PII detectors, and the replacement styles.

Every traced call passes its content through here, so detection is built to cost little on
ordinary text and to stay linear on hostile text:

* The detectors read bytes, one per character: ASCII text encodes with one copy; other text
  encodes with every non-ASCII character as ``?`` (no detector matches one), so an offset
  found is an offset in the text. What they read is rewritten first (``redaction_text``) so
  that a secret cannot hide in how it is written: look-alikes read as ASCII, invisible
  characters are dropped, JSON and percent escapes are decoded; offsets are mapped back, so a
  replacement covers what was written, and a text holding no secret comes back as it was.
* Each family of detectors is one pattern led by a single literal byte its matches contain
  (``-`` for ``sk-`` and PEM headers, ``_`` for ``ghp_``/``sk_live_``, ``@``, ``=`` ...), with
  what comes before that byte checked by a lookbehind. SRE finds a leading literal at memchr
  speed, where an alternation or a class costs a test per byte (the naive alternation of every
  detector scans 2-3 MB/s); a family whose byte is absent costs one ``in`` test.
* ``name=value`` and ``name: value`` (a header, a YAML line, a JSON or repr item) whose name
  is a secret's (``is_secret_key``) are found from their ``=`` or ``:``, by lookbehinds for how
  such names end, cheapest first, since JSON holds a colon every 20 bytes; only a name that
  ends so costs a Python call.
* Digit-shaped secrets (cards, phones, SSNs, IPv4, IBAN) are matched in a copy of the text whose
  digits read ``0`` and letters ``a``/``A`` (one ``bytes.translate``), by one pattern led by the
  literal ``0``; only the checks a pattern cannot make (Luhn, octets, mod 97, epoch range) run
  in Python, on the few spans the pattern returns.
* Unbounded repeats are possessive, and an attempt that fails does bounded work or consumes what
  it read, so no input makes a pattern backtrack over the same bytes again and again.
* Base64 runs of 24+ characters are decoded and, when they decode to text, scanned again
  (three levels deep): the base64 of a key is the key.

Identifiers are not secrets: hex ids, uuids, digests, versions and epoch timestamps pass
untouched (a number glued to letters, to ``-`` after hex, or to dots is part of an id).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from appsdk.redaction_text import mapped, views
from appsdk.serialization import count_render_error

__all__ = ["BUILTIN_LABELS", "Finding", "Redactor", "is_secret_key", "luhn_ok"]

ReplacementStyle = Literal["label", "pseudonym"]
# (start, end, label): what the scanners produce; a Finding only at the public edge.
_Span = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret found in a text: where, and which kind (never the value itself)."""

    start: int
    end: int
    label: str


# A key glued to a word ("task-..." is not "sk-...") is not a key: the byte before a prefix.
_FREE = rb"(?<![A-Za-z0-9])"
# "Basic concepts" is English: the credentials must decode to "user:password" (checked in
# Python). A lookahead, so that when they do not the scan goes on right after "Basic".
_BASIC_CREDENTIALS = rb"(?=\s++(?P<basic>[A-Za-z0-9+/]{4,}+={0,2}))"

# Each family: its literal byte, its pattern, and per named group the label and how many bytes
# of the prefix sit before the literal (the match starts at the literal).
_FAMILIES: tuple[tuple[int, re.Pattern[bytes], dict[str, tuple[str, int]]], ...] = (
    (
        ord("-"),
        re.compile(
            # One byte back rules out most hyphens of prose before the longer lookbehinds.
            rb"-(?:(?<=k-)(?:(?<=" + _FREE + rb"[sp]k-)(?P<langfuse>lf-[A-Za-z0-9-]{8,}+)"
            rb"|(?<=" + _FREE + rb"sk-)(?P<openai>(?:proj-|svcacct-|admin-|ant-)?"
            rb"[A-Za-z0-9_-]{16,}+))"
            rb"|(?<=" + _FREE + rb"xox[abposre]-)(?P<slack>[A-Za-z0-9-]{10,}+)"
            # Glued to anything (``key:abc-----BEGIN``) it is still a key; cut off before its
            # END line it is still a key: redact to the end.
            rb"|(?P<pem>----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END"
            rb"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*+)))"
        ),
        {
            "langfuse": ("LANGFUSE_KEY", 2),
            "openai": ("API_KEY", 2),
            "slack": ("SLACK_TOKEN", 4),
            "pem": ("PRIVATE_KEY", 0),
        },
    ),
    (
        ord("_"),
        re.compile(
            rb"_(?:(?<=" + _FREE + rb"gh[opsu]_)(?P<github>[A-Za-z0-9]{20,}+)"
            rb"|(?<=" + _FREE + rb"github_)(?P<github_pat>pat_[A-Za-z0-9_]{20,}+)"
            rb"|(?<=" + _FREE + rb"[sr]k_)(?P<stripe>(?:live|test)_[A-Za-z0-9]{10,}+)"
            rb"|(?<=" + _FREE + rb"whsec_)(?P<stripe_webhook>[A-Za-z0-9]{20,}+))"
        ),
        {
            "github": ("GITHUB_TOKEN", 3),
            "github_pat": ("GITHUB_TOKEN", 6),
            "stripe": ("STRIPE_KEY", 2),
            "stripe_webhook": ("STRIPE_KEY", 5),
        },
    ),
    (
        ord("I"),
        re.compile(
            # The whole run: a key with letters glued on still leaks if only 20 are cut.
            rb"I(?:(?<=" + _FREE + rb"A[KS]I)(?P<aws>A[0-9A-Z]{16}[0-9A-Z]*+)"
            rb"|(?<=" + _FREE + rb"AI)(?P<google>za[0-9A-Za-z_-]{30,}+))"
        ),
        {"aws": ("AWS_KEY", 2), "google": ("GOOGLE_API_KEY", 1)},
    ),
    (
        ord("J"),
        re.compile(
            rb"J(?<=" + _FREE + rb"eyJ)(?P<jwt>[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+\."
            rb"[A-Za-z0-9_-]*+)"
        ),
        {"jwt": ("JWT", 2)},
    ),
    (
        ord("B"),
        re.compile(
            rb"B(?:(?:earer|EARER)\s++(?P<bearer>[A-Za-z0-9._~+/=-]{6,}+)"
            rb"|(?:asic|ASIC)" + _BASIC_CREDENTIALS + rb")"
        ),
        {"bearer": ("BEARER_TOKEN", 0), "basic": ("BASIC_AUTH", 0)},
    ),
    (
        ord("b"),
        # Lower case is also English ("bearer bonds"): a token needs a digit or 16 characters.
        re.compile(
            rb"b(?:earer\s++(?P<bearer>(?=[A-Za-z._~+/=-]*+[0-9]|[A-Za-z0-9._~+/=-]{16})"
            rb"[A-Za-z0-9._~+/=-]{6,}+)|asic" + _BASIC_CREDENTIALS + rb")"
        ),
        {"bearer": ("BEARER_TOKEN", 0), "basic": ("BASIC_AUTH", 0)},
    ),
)
_EMAIL = re.compile(
    rb"@(?<=[A-Za-z0-9._%+-]@)[A-Za-z0-9][A-Za-z0-9-]*+(?:\.[A-Za-z0-9-]++)*\.[A-Za-z]{2,}"
)
_LOCAL_PART_REVERSED = re.compile(rb"[A-Za-z0-9._%+-]{1,64}")
# The whole run after "://" is consumed, so "://" repeated is one match, not one per repeat.
_URL = re.compile(rb"://[^\s\"'<>]*+")
_PORT_AND_PATH = re.compile(rb"[0-9]{1,5}[/?#,;]")
# A colon between hex digits or colons, in a run with a "::" or a third colon: maybe an IPv6
# address (not a time of day, 12:30:00, which would cost a Python call per timestamp).
_IPV6 = (
    rb"(?<=[0-9A-Fa-f:]:)(?P<ipv6>(?:(?<=::)[0-9A-Fa-f.]*+:"
    rb"|[0-9A-Fa-f.]*+:(?:(?<=::)|[0-9A-Fa-f.]*+:))[0-9A-Fa-f:.]*+)"
)
_HEX_COLON_REVERSED = re.compile(rb"[0-9A-Fa-f:.]{0,46}")
# How secret names end (``is_secret_key``'s words), for the detectors led by "=" and ":" to
# find a name by the bytes before them; a test checks each secret name of the tests ends so.
_NAME_ENDINGS = (
    b"key token pwd passwd password pass _pw phrase passcode pin_code pincode secret auth jwt sig"
    b" authorization cookie credential credentials bearer signature sessionid sessid otp pin dsn"
    b" conn_str connstr n_string nstring database_url db_url"
).split()


def _after_name(then: bytes) -> bytes:
    """A lookbehind: a secret name's ending, then ``then``. Cheap tests first, as JSON has a
    colon every 20 bytes: a byte class for each of the endings' last three bytes, then those
    three bytes, then whole endings ("Pure:" ends like "signature:", but is not)."""
    tails = sorted({ending[-3:] for ending in _NAME_ENDINGS})
    classes = b"".join(
        b"[%s]"
        % bytes(sorted({c for tail in tails for c in tail[i : i + 1] + tail[i : i + 1].upper()}))
        for i in range(3)
    )
    by_length: dict[int, list[bytes]] = {}
    for ending in _NAME_ENDINGS:
        by_length.setdefault(len(ending), []).append(ending)
    endings = b"|".join(rb"(?<=(?i:%s)%s)" % (b"|".join(e), then) for e in by_length.values())
    return rb"(?<=%s%s)(?<=(?i:%s)%s)(?:%s)" % (classes, then, b"|".join(tails), then, endings)


# ``name=value`` whose name is a secret's: the value; also ``name = "value"`` and PHP's
# ``'name' => 'value'`` when the value is quoted or a token ending its line (checked in Python;
# a bounded lookahead first spares code's "token = tokenizer.encode(x)" a Python call).
_ASSIGNMENT = re.compile(
    rb"=(?:%s|(?:%s)(?=>?[ \t]{0,8}+(?:[\"']|[^\s\"'(){}\[\],;]{1,256}+(?![(\[]))))"
    % (_after_name(b"="), b"|".join(_after_name(b + b"=") for b in (rb"[ \t\"']", rb"[\"'][ \t]")))
)
# Each colon, once: an IPv6 address, or after a secret's name a header or YAML line, a JSON or
# repr item (``name: value``).
_COLON = re.compile(
    rb":(?:%s|%s)" % (_IPV6, b"|".join(_after_name(b + b":") for b in (b"", rb"[\"']")))
)
_NAME_REVERSED = re.compile(rb"[A-Za-z0-9_.-]{1,64}")
_BLANK = re.compile(rb"[ \t]*+")
_VALUE = re.compile(rb"[^\s&#\"'<>\[\](){},;]++")
_QUOTED = {quote: re.compile(rb"(?:[^\r\n\\%c]|\\[^\r\n])*+" % quote) for quote in b"\"'"}
# An unquoted field's value ends with its line (also a "\\n" escaped in JSON), and inside a
# string (a header in JSON) at its quote, in a list or an object at "," ";" or a bracket.
_TO_LINE_END = re.compile(rb"(?:[^\r\n\\]|\\[^nr\r\n])*+")
_TO_STRING_END = re.compile(rb"(?:[^\r\n\\\"']|\\[^nr\r\n])*+")
_TO_ITEM_END = re.compile(rb"(?:[^\r\n\\,;&\"'(){}\[\]]|\\[^nr\r\n])*+")
_FIELD_STARTS = {
    **dict.fromkeys((b"", b"\n", b"\r", b"-"), _TO_LINE_END),
    **dict.fromkeys((b'"', b"'", b"\\n", b"\\r"), _TO_STRING_END),  # "...\\r\\nCookie: ..."
    **dict.fromkeys((b"{", b"[", b"(", b",", b";", b"=", b"&"), _TO_ITEM_END),
}
# Not values: literals, and the types in code's annotations ("password: str", "token: string").
_NOT_VALUES = frozenset(
    b"null none true false undefined str bytes string int integer float number bool boolean any"
    b" object dict list tuple secretstr".split()
)
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]*+")
_NOT_IDENTIFIER = re.compile(rb"(?![A-Za-z_])[^\s\"'(){}\[\],;]++")  # a quoted name's value

# Digit-shaped secrets are matched in a copy of the text whose digits read "0" and letters
# "a"/"A": one pattern led by the literal "0" finds them all.
_CLASSES = bytes.maketrans(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"0" * 10 + b"A" * 26 + b"a" * 26,
)
# A number ends where no digit, letter or "_" follows, nor "-" or "." and more of the same:
# "4155550100f0f3", "1732870000.123" and "415-555-0100-ext" are parts of something longer.
_TRAIL = rb"(?![0aA_])(?![.\-][0aA])"
_PHONE_GROUPS = rb"(?:0{2,5}[ .\-]){0,3}0{2,5}"
# Ten digits at least, in groups; dots group one only as 415.555.0100 or 01.23.45.67.89, or
# they write a version. The first digit is already matched.
_GROUPED_PHONE = (
    rb"(?=[0 .\-]{10})(?:0{0,4}[ \-]" + _PHONE_GROUPS + rb"|00\.000\.0000|0\.00\.00\.00\.00)"
)
_CARD_GROUPS = (  # 4-4-4-1..4(-1..3), or 4-6-4..5; the first digit already matched
    rb"000(?P<sep>[ _-])(?:0000(?P=sep)0000(?P=sep)0{1,4}(?:(?P=sep)0{1,3})?"
    rb"|000000(?P=sep)0{4,5})"
)
_NUMERIC = re.compile(
    # Only a number's first digit starts a secret (a digit after "-" or "." is the middle of
    # 2024-06-01 or 10.0.0.1), and all but an IBAN go on for six more digits, separators or
    # brackets, the first a digit, a dotted quad or a group of two: prose's "2025" fails here.
    rb"0(?<!00)(?<!0[.\-]0)(?:(?=[0 .()_\-]{6})(?=0|\.0|[ .(\-]{1,2}00)(?:"
    # Bare runs first: the most common in number-heavy text, and no other shape starts so;
    # then a card as a float writes it: 4111111111111111.0, 4.111111111111111e+15.
    rb"(?<![aA_.+]0)(?:(?P<run>0{9,18}+)" + _TRAIL + rb"|"
    rb"(?P<float>0{12,18}+\.0++|\.0{8,18}+[aA]\+?0{1,2})" + _TRAIL + rb")|"
    rb"(?<=(?<![0aA_])\+0)(?P<plus>[0 .\-()]{4,19}(?<=0))" + _TRAIL + rb"|"
    rb"(?<=(?<![0aA_])\(0)(?P<paren>0{0,4}\)[ .\-]?" + _PHONE_GROUPS + rb")" + _TRAIL + rb"|"
    # An SSN is shaped enough to be one even glued to a word (a uuid has no 2-digit group).
    rb"(?P<ssn>00-00-0000)(?!0)(?![.\-]0)|"
    # The rest is not glued to a word or an id ("c271d4155550100f0f3"). A card is tried
    # before a phone, which the same digits could also make.
    rb"(?<![aA_.]0)(?:(?P<card>" + _CARD_GROUPS + rb")"
    rb"|(?P<grouped>" + _GROUPED_PHONE + rb")"
    rb"|(?P<ipv4>0{0,2}\.0{1,3}\.0{1,3}\.0{1,3}))" + _TRAIL + rb")"
    rb"|(?<=(?<![0aA_])AA0)(?P<iban>0(?: ?[0A]{4}){2,7}(?: ?[0A]{1,3})?)" + _TRAIL + rb")"
)
_DIGIT_GROUP = re.compile(rb"0++")
_ISO_DATE = re.compile(rb"(?:19|20)[0-9]{2}-[01][0-9]-[0-3][0-9](?![0-9])")
_TRAIL_OK = re.compile(_TRAIL)
_SEPARATORS = b" .-_()+"
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
# Epoch timestamps (2000-2100) in seconds and milliseconds are not phone numbers.
_EPOCH_SECONDS = range(946_684_800, 4_102_444_800)
_EPOCH_MILLIS = range(946_684_800_000, 4_102_444_800_000)

_BASE64_CLASSES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_", b"b" * 66
)
_BASE64_MIN = 24  # the shortest base64 that can hide a key: 18 bytes
# Base64 inside base64 is decoded too, three levels deep: each level is 3/4 of the one before
# (decoded once it is text), so all levels together cost less than 3 times the text.
_BASE64_LEVELS = 3
_BASE64_NEEDLE = b"b" * _BASE64_MIN
_BASE64_RUN = re.compile(rb"b++")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_UPPERCASE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWERCASE = _UPPERCASE.lower()

BUILTIN_LABELS = frozenset(
    {label for _, _, groups in _FAMILIES for label, _ in groups.values()}
    | {"PGP_PRIVATE_KEY", "BASIC_AUTH", "EMAIL", "URL_CREDENTIALS", "IP_ADDRESS", "SSN"}
    | {"CARD", "PHONE", "IBAN", "SECRET"}
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number passes."""
    return _luhn(digits.encode("ascii"))


def _luhn(digits: bytes) -> bool:
    # Sums of byte values, all in C: every other digit as is, the rest doubled (digit-summed).
    doubled = digits[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(digits[-1::-2]) + sum(doubled) - 48 * len(digits)) % 10 == 0


def _iban_ok(compact: bytes) -> bool:
    remainder = 0
    for char in compact[4:] + compact[:4]:
        if char >= 65:  # a letter counts as two digits, A=10 ... Z=35
            remainder = (remainder * 100 + char - 55) % 97
        else:
            remainder = (remainder * 10 + char - 48) % 97
    return remainder == 1


_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "access_key",
    "access_token",  # also inside a longer name: refresh_token_v2
    "refresh_token",
    "id_token",
    "auth_token",
    "session_token",
    "bearer",
    "signature",
    "sessionid",
    "pin_code",
    "pincode",
    # Connection strings and database URLs carry credentials in shapes no detector knows.
    "conn_str",
    "connstr",
    "connection_string",
    "connectionstring",
    "database_url",
    "db_url",
)
_SECRET_KEY_EXACT = frozenset({"token", "auth", "pwd", "pass", "key", "jwt", "pgpass", "phpsessid"})
# The last word of DB_PASS, SMTP_PWD, card_pin, SENTRY_DSN; not of pin_memory, pass_through.
_SECRET_LAST_WORDS = frozenset({"pass", "pwd", "pw", "pin", "otp", "totp", "dsn"})
# A key is secret by what it is for: signing_key, master_key, not primary_key, sort_key.
_SECRET_KEY_KINDS = frozenset(
    {
        "access",
        "account",
        "aes",
        "api",
        "app",
        "auth",
        "client",
        "crypto",
        "decryption",
        "encryption",
        "hmac",
        "jwt",
        "license",
        "master",
        "private",
        "root",
        "secret",
        "session",
        "shared",
        "signing",
        "ssh",
        "storage",
        "subscription",
        "webhook",
    }
)
# Query parameters only: as a field name "sig" is too short to mean anything by itself.
_SECRET_PARAMETERS = frozenset({"sig"})
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NAME_SEPARATORS = str.maketrans("-. ", "___")
_secret_key_cache: dict[str, bool] = {}


def is_secret_key(key: str, extra: Sequence[str] = ()) -> bool:
    """True for names like ``password``, ``api_key``, ``accessToken``, ``DB_PASS``; not
    ``input_tokens``, ``primary_key``, ``bypass``."""
    cached = _secret_key_cache.get(key)
    if cached is not None and not extra:
        return cached
    # accessToken, client-secret and X-Api-Key all read as snake case.
    name = _CAMEL_HUMP.sub("_", key).lower().translate(_NAME_SEPARATORS)
    words = name.rsplit("_", 2)
    secret = (
        name in _SECRET_KEY_EXACT
        or name.endswith("token")
        or words[-1] in _SECRET_LAST_WORDS
        or (words[-1] == "key" and len(words) > 1 and words[-2] in _SECRET_KEY_KINDS)
        or any(part in name for part in _SECRET_KEY_PARTS)
        or any(part.lower() in name for part in extra)
    )
    if not extra and len(_secret_key_cache) < 4096:
        _secret_key_cache[key] = secret
    return secret


def _scan(data: bytes, depth: int = 0) -> list[_Span]:
    """Every built-in detection in ``data``, unsorted and possibly overlapping."""
    found: list[_Span] = []
    # Membership of an int is a memchr; of a one-byte bytes object, ten times slower.
    for literal, pattern, groups in _FAMILIES:
        if literal in data:
            for match in pattern.finditer(data):
                group = match.lastgroup or ""
                label, before = groups[group]
                start = match.start() - before
                if label == "PRIVATE_KEY" and data.find(b"PGP", start, start + 40) != -1:
                    label = "PGP_PRIVATE_KEY"
                elif label == "BASIC_AUTH" and not _basic_auth(data, match):
                    continue
                found.append((start, match.end(group), label))
    if 64 in data:  # @
        for match in _EMAIL.finditer(data):
            _email(data, match, found)
    if 58 in data:  # :
        for match in _URL.finditer(data):
            if 64 in match.group():
                _url_credentials(data, match.start() + 3, match.end(), found)
        scanned = 0  # a value is read once, so "password:" repeated costs linear time
        for match in _COLON.finditer(data):
            if match.lastgroup:
                _ipv6(data, match, found)
            elif match.start() >= scanned:
                scanned = _field(data, match.start(), found)
    if 61 in data:  # =
        scanned = 0
        for match in _ASSIGNMENT.finditer(data):
            if match.start() >= scanned:
                scanned = _assignment(data, match.start(), found)
    classes = data.translate(_CLASSES)
    if 48 in classes:  # a digit
        _numeric(data, classes, found)
    if depth < _BASE64_LEVELS and len(data) >= _BASE64_MIN:
        _base64(data, found, depth)
    return found


def _basic_auth(data: bytes, match: re.Match[bytes]) -> bool:
    """Whether "Basic ..." carries credentials: after an Authorization header, or user:pass."""
    before = data[max(0, match.start() - 24) : match.start()].lower()
    return b"authorization" in before or b":" in _decoded(match.group("basic"))


def _decoded(token: bytes) -> bytes:
    """The base64 ``token`` decoded, padding or not (a stray last character is dropped)."""
    token = token.rstrip(b"=")
    token = token[: len(token) - (len(token) % 4 == 1)]
    try:
        return binascii.a2b_base64(token + b"=" * (-len(token) % 4))
    except binascii.Error:
        return b""


def _email(data: bytes, match: re.Match[bytes], found: list[_Span]) -> None:
    at = match.start()
    local = _LOCAL_PART_REVERSED.match(data[max(0, at - 64) : at][::-1])
    if local is None:
        return
    start = at - local.end()
    while start < at and data[start] == 46:  # a local part never starts with "."
        start += 1
    if start < at:
        found.append((start, match.end(), "EMAIL"))


def _url_credentials(data: bytes, start: int, end: int, found: list[_Span]) -> None:
    """``user:password@`` after each ``://`` in ``data[start:end]`` (one run, no spaces).

    The password may hold ``#``, ``/`` or ``@`` (written unescaped all the time), so the
    credentials end at the run's last ``@`` before the next ``://``; the user name may be empty.
    """
    while start < end:
        next_url = data.find(b"://", start, end)
        stop = end if next_url == -1 else next_url
        at = data.rfind(b"@", start, stop)
        colon = data.find(b":", start, at) if at != -1 else -1
        if colon != -1:
            user = data[start:colon]
            password = data[colon + 1 : at]
            if (
                password
                and not any(c in user for c in b"/?#@[]")  # "[" nor "]" in a user name
                # host:port/path?email=a@b is an address, not a password (a host has a name).
                and (not user or _PORT_AND_PATH.match(password) is None)
            ):
                found.append((start, at, "URL_CREDENTIALS"))
        if next_url == -1:
            return
        start = next_url + 3


def _ipv6(data: bytes, match: re.Match[bytes], found: list[_Span]) -> None:
    colon = match.start()
    before = _HEX_COLON_REVERSED.match(data[max(0, colon - 46) : colon][::-1])
    start = colon - (before.end() if before is not None else 0)
    end = match.end()
    while data[end - 1] == 46:  # a sentence's full stop
        end -= 1
    if end - start > 45 or (start > 0 and data[start - 1 : start].isalnum()):
        return
    if data[end : end + 1].isalnum():
        return
    candidate = data[start:end]
    colons = candidate.count(b":")
    if b"::" not in candidate and colons != 7 and not (colons == 6 and b"." in candidate):
        return  # a time of day, a MAC address, a ratio: cheaper to rule out than to parse
    try:
        ipaddress.IPv6Address(candidate.decode("ascii"))
    except ValueError:
        return
    found.append((start, end, "IP_ADDRESS"))


def _name_before(data: bytes, end: int) -> tuple[int, str]:
    """The name that ends at ``end`` (where it starts), or ``(end, "")``."""
    name = _NAME_REVERSED.match(data[max(0, end - 64) : end][::-1])
    if name is None:
        return end, ""
    start = end - name.end()
    start += data[start - 1 : start] == b"\\" and data[start] in b"nrt"  # JSON's "\\nCookie"
    return start, data[start:end].decode("ascii")


def _assignment(data: bytes, equals: int, found: list[_Span]) -> int:
    """The value after ``equals`` if the name before is a secret's; where the scan goes on."""
    spaced = data[equals - 1] in b" \t"
    quote = data[equals - 1 - spaced] if data[equals - 1 - spaced] in b"\"'" else 0
    start, key = _name_before(data, equals - spaced - (quote != 0))
    if not key or (quote and data[start - 1 : start] != bytes((quote,))):
        return equals + 1
    if not (is_secret_key(key) or key.lower() in _SECRET_PARAMETERS):
        return equals + 1
    position = equals + 1 + (data[equals + 1 : equals + 2] == b">")  # PHP's 'password' => 'x'
    if spaced or quote or data[position : position + 1] in b" \t":
        # Quoted, or a config file's line ("password = x" from its start); not code's
        # "self.token = token", "token = tokenizer.encode(x)" nor "password == x".
        value = _end(_BLANK, data, position)
        if data[value : value + 1] not in (b'"', b"'"):
            after = _end(_BLANK, data, _end(_VALUE, data, value))
            if data[value : value + 1] == b"=" or data[after : after + 1] not in b"\r\n#;":
                return equals + 1
            if data[start - 1 : start] not in b"\r\n" or "." in key:
                return equals + 1
    return _after(data, position, _VALUE, found)


def _field(data: bytes, colon: int, found: list[_Span]) -> int:
    """The value after ``colon`` if the name before is a secret's and starts a field (a line, an
    item, a string: not "the key: ..." in prose); where the scan goes on."""
    quote = data[colon - 1] if data[colon - 1] in b"\"'" else 0
    start, key = _name_before(data, colon - (quote != 0))
    if not key or not is_secret_key(key):
        return colon + 1
    if quote and data[start - 1 : start] != bytes((quote,)):
        return colon + 1  # "password": "x", {'pin': 1234}
    before = data[max(0, start - 64) : start].rstrip(b" \t")
    to_end = (
        _NOT_IDENTIFIER if quote else _FIELD_STARTS.get(before[-2:], _FIELD_STARTS.get(before[-1:]))
    )
    return colon + 1 if to_end is None else _after(data, colon + 1, to_end, found)


def _after(data: bytes, position: int, to_end: re.Pattern[bytes], found: list[_Span]) -> int:
    """The value at ``position``, after blanks: a quoted string's content, or what ``to_end``
    takes (trailing blanks, literals and types are not values). Returns where the scan goes on:
    a value read is not read again for names, so "password: " repeated costs linear time."""
    start = _end(_BLANK, data, position)
    quoted = data[start : start + 1] in (b'"', b"'")
    end = _end(_QUOTED[data[start]] if quoted else to_end, data, start + quoted)
    start += quoted
    stop = start + len(data[start:end].rstrip())
    if stop > start and (quoted or not _is_code(data, start, stop)):
        found.append((start, stop, "SECRET"))
    return end


def _is_code(data: bytes, start: int, stop: int) -> bool:
    """Whether the value ``data[start:stop]`` is code, not a value: a literal or a type alone,
    a call, an index, a type's union or default ("token: str | None = None", "secret:
    SecretStr = Field(...)")."""
    word = _end(_IDENTIFIER, data, start)
    after = _end(_BLANK, data, word)
    return word > start and (
        (word == stop and data[start:word].lower() in _NOT_VALUES)
        or data[word : word + 1] in (b"(", b"[")
        or (after > word and data[after : after + 1] in (b"|", b"="))
    )


def _end(pattern: re.Pattern[bytes], data: bytes, position: int) -> int:
    match = pattern.match(data, position)
    return position if match is None else match.end()


def _numeric(data: bytes, classes: bytes, found: list[_Span]) -> None:
    append = found.append
    position = 0
    while True:
        # finditer moves on from each match's end; a match rejected or cut short may leave a
        # number starting inside it, so the scan restarts there (rare: dates, long numbers).
        for match in _NUMERIC.finditer(classes, position):
            kind = match.lastgroup or ""
            start, end = match.span()
            if kind == "run":  # most matches in number-heavy text: kept short
                label = _run_label(data[start:end])
                if label and not _ends_uuid(data, start):
                    append((start, end, label))
                continue
            if kind == "float":
                digits = _float_digits(data[start:end])
                if len(digits) <= 19 and _run_label(digits) == "CARD":
                    append((start, end, "CARD"))
                continue
            if kind in ("card", "grouped") and _ends_uuid(data, start):
                continue
            if kind == "grouped" and _ISO_DATE.match(data, start):
                position = start + 10  # 2024-07-18 12:30 is a date and a time, not a phone
                break
            # The match starts at the first digit; a "+", "(" or IBAN country code sits before.
            start -= _BEFORE_FIRST_DIGIT.get(kind, 0)
            labelled = _numeric_label(kind, data, classes, start, end)
            if labelled is None:
                position = match.start() + 1
                break
            append((start, labelled[1], labelled[0]))
            if labelled[1] < end:
                position = labelled[1]
                break
        else:
            return


_BEFORE_FIRST_DIGIT = {"plus": 1, "paren": 1, "iban": 2}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _ends_uuid(data: bytes, start: int) -> bool:
    """Whether the number at ``start`` is the last group of a uuid ("...-a456-426614174000")."""
    return start >= 5 and data[start - 1] == 45 and _HEX.issuperset(data[start - 5 : start - 1])


def _float_digits(number: bytes) -> bytes:
    """The digits of the whole number a float writes ("4.1e+3" is 4100), or ``b"0"``."""
    mantissa, _, exponent = number.lower().partition(b"e")
    whole, _, fraction = mantissa.partition(b".")
    digits, point = whole + fraction, len(whole) + int(exponent or 0)
    if not digits.isdigit() or digits[point:].strip(b"0"):
        return b"0"  # another letter than "e", or a fraction
    return digits[:point].ljust(point, b"0")


def _run_label(digits: bytes) -> str:
    """A card or a phone for 10-19 digits written without separators, unless a timestamp."""
    count = len(digits)
    if count in (10, 12, 13) and (int(digits) in _EPOCH_SECONDS or int(digits) in _EPOCH_MILLIS):
        return ""
    if count >= 13 and digits[0] in b"23456" and _luhn(digits):
        return "CARD"
    return "PHONE" if count <= 15 else ""


def _numeric_label(
    kind: str, data: bytes, classes: bytes, start: int, end: int
) -> tuple[str, int] | None:
    """What the candidate ``data[start:end]`` is, and where it ends (it may end sooner)."""
    if kind == "ssn":
        return "SSN", end
    if kind == "ipv4":
        octets = data[start:end].split(b".")
        return ("IP_ADDRESS", end) if all(int(octet) <= 255 for octet in octets) else None
    if kind == "iban":
        return _iban(data, start, end)
    digits = data[start:end].translate(None, _SEPARATORS)
    count = len(digits)
    if kind == "card" and digits[0] in b"23456" and _luhn(digits):
        return "CARD", end
    # A phone: "+" and 7-15 digits, or 10-15 digits in groups. More digits may be a phone and
    # then another number ("+44 20 7946 0958 4111 1111"): try fewer groups, longest first.
    low = 7 if kind == "plus" else 10
    if low <= count <= 15:
        return "PHONE", end
    if count < low:
        return None
    total = 0
    ends: list[tuple[int, int]] = []
    for group in _DIGIT_GROUP.finditer(classes, start, end):
        total += group.end() - group.start()
        ends.append((group.end(), total))
    for stop, total in reversed(ends[:-1]):
        if total < low:
            return None
        if total <= 15 and _TRAIL_OK.match(classes, stop) is not None:
            return "PHONE", stop
    return None


def _iban(data: bytes, start: int, end: int) -> tuple[str, int] | None:
    # Written in groups, the pattern may have taken a following word ("... 00 AND"): drop
    # groups from the end until the checksum holds.
    candidate = data[start:end]
    while True:
        compact = candidate.replace(b" ", b"")
        if len(compact) < 15:
            return None
        if _iban_ok(compact):
            return "IBAN", start + len(candidate)
        cut = candidate.rfind(b" ")
        if cut == -1:
            return None
        candidate = candidate[:cut]


def _base64(data: bytes, found: list[_Span], depth: int) -> None:
    marked = data.translate(_BASE64_CLASSES)
    at = marked.find(_BASE64_NEEDLE)
    while at != -1:
        run = _BASE64_RUN.match(marked, at)
        end = run.end() if run is not None else at + _BASE64_MIN
        label = _hidden_in_base64(data[at:end], depth)
        if label:
            padding = data[end : end + 2]
            found.append((at, end + len(padding) - len(padding.lstrip(b"=")), label))
        at = marked.find(_BASE64_NEEDLE, end)


def _hidden_in_base64(run: bytes, depth: int) -> str:
    """The label of the first secret in the text that ``run`` decodes to, or ""."""
    # Base64 of text mixes cases throughout (each byte's high bits land on "Y"-"e" or
    # "G"/"H"/"W"/"X"); hex ids, digests, paths and snake_case names do not, and are most runs.
    lower = len(run) - len(run.translate(None, _LOWERCASE))
    upper = len(run) - len(run.translate(None, _UPPERCASE))
    if lower < 2 or upper < 2:
        return ""
    if b"-" in run or b"_" in run:
        if b"+" in run or b"/" in run:
            return ""  # both alphabets at once: a path or an identifier, not base64
        run = run.translate(_URLSAFE_TO_STANDARD)
    # The run may start mid-quantum when glued to the text before it: try each alignment.
    for shift in range(4):
        decoded = _decoded(run[shift:])
        if decoded and len(decoded.translate(None, _PRINTABLE)) * 10 <= len(decoded):
            spans = _scan(decoded, depth + 1)
            return spans[0][2] if spans else ""
    return ""


def _merged(found: list[_Span]) -> list[_Span]:
    found.sort(key=lambda span: (span[0], -span[1]))
    merged = [found[0]]
    for span in found[1:]:
        last = merged[-1]
        if span[0] >= last[1]:
            merged.append(span)
        elif span[1] > last[1]:
            # Overlapping detections: redact their union, never leave a tail behind.
            merged[-1] = (last[0], span[1], last[2])
    return merged


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
        return [Finding(start, end, label) for start, end, label in self._spans(text)]

    def _spans(self, text: str, keep: frozenset[str] = frozenset()) -> list[_Span]:
        found: list[_Span] = []
        if len(text) >= 6:  # "a@b.io": nothing shorter holds a built-in secret
            for data, way in views(text):
                found += mapped(_scan(data), way)
        for label, custom in self._patterns:
            found.extend((m.start(), m.end(), label) for m in custom.finditer(text))
        if keep and found:
            # Before merging: a kept address must not carry an overlapping secret with it.
            found = [span for span in found if span[2] not in keep]
        return _merged(found) if len(found) > 1 else found

    def replacement(self, label: str, value: str) -> str:
        """What replaces ``value``, a secret of kind ``label``."""
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
        spans = self._spans(text, keep)
        if spans:
            parts: list[str] = []
            last = 0
            for start, end, label in spans:
                parts.append(text[last:start])
                parts.append(self.replacement(label, text[start:end]))
                last = end
            parts.append(text[last:])
            text = "".join(parts)
        for function in self._callables:
            try:
                text = function(text)
            except Exception:  # the application's own redactor: what it could not clear goes
                count_render_error()
                return "[REDACTED:REDACTOR_ERROR]"
        return text
