"""appsdk's exceptions: one root, one tree; and ``safe_url``, how any URL is shown.

::

    AppSDKError
    ├── ConfigError (also ValueError)      bad configuration: names the variable and the fix
    ├── StoreError                         the local trace store cannot be opened or read
    └── (the llm-d client's and feedback errors subclass AppSDKError too)

What a user calls directly (configure, the CLI, the client, feedback) raises these. The tracing
path (decorator, policy, processors, exporters) never raises into user code.

Error messages, warnings, ``appsdk doctor`` and ``appsdk spool status`` show endpoints, and
endpoints may carry credentials (``https://user:token@host``, ``?api_key=...``). Every URL that
is printed goes through :func:`safe_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = ["AppSDKError", "ConfigError", "StoreError", "safe_url"]


class AppSDKError(Exception):
    """Root of every error appsdk raises."""


class ConfigError(AppSDKError, ValueError):
    """A configuration value is missing or invalid.

    Args:
        field: the setting or environment variable at fault.
        problem: what is wrong with it (never the value of a secret).
        fix: what to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


class StoreError(AppSDKError):
    """The embedded trace store cannot be opened, written or read."""


MASK = "***"

# Query parameter names that carry credentials by convention (compared without - and _):
# api_key, access_token, X-Amz-Signature, X-Amz-Credential, sig, password, client_secret, ...
_SECRET_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session|jwt|cookie|code")
# A value that looks like a credential whatever its name: a known key prefix, or a long run
# of letters mixed with digits (random tokens), which no host or path word looks like.
_SECRET_VALUE = re.compile(
    r"^(?:sk-|pk-lf-|sk-lf-|ghp_|gho_|github_pat_|xox[abpr]-|AKIA|ASIA|eyJ|glpat-)"
    r"|^(?=[\w.~+/=-]{20,}$)(?=.*\d)(?=.*[A-Za-z])"
)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _looks_secret(name: str, value: str) -> bool:
    plain = unquote(name).lower().replace("-", "").replace("_", "")
    return bool(_SECRET_NAME.search(plain) or _SECRET_VALUE.search(unquote(value)))


def _masked_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if not sep:  # a bare word: a token on its own (``?abcd1234...``) or a flag
            pairs.append(MASK if _looks_secret("", name) else name)
        else:
            pairs.append(f"{name}={MASK}" if value and _looks_secret(name, value) else pair)
    return "&".join(pairs)


def safe_url(url: str) -> str:
    """``url`` as it may be printed: no user info, secret-looking parts masked.

    The host, port and an ordinary path stay, so a message still says where; user info
    becomes ``***@``, query values named like credentials (``api_key``, ``token``, ``sig``...)
    or looking like one (``sk-...``, long random strings) become ``***``, as do such path
    segments; the fragment is dropped; control characters are escaped.

    Example:
        >>> safe_url("https://user:pw@otlp.example.com/v1/traces?api_key=abc&region=eu")
        'https://***@otlp.example.com/v1/traces?api_key=***&region=eu'
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - a malformed port raises here, not later
    except ValueError:
        return "(a value that is not a URL; not shown)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    path = "/".join(
        MASK if segment and _SECRET_VALUE.search(unquote(segment)) else segment
        for segment in parts.path.split("/")
    )
    if parts.netloc:
        shown = f"{parts.scheme}://{netloc}{path}"
    else:
        # No "//": "user:pw@host:4318" parses as scheme "user"; mask up to its last "@".
        shown = f"{parts.scheme}:{path}" if parts.scheme else path
        head, slash, rest = shown.partition("/")
        if "@" in head:
            shown = MASK + "@" + head.rpartition("@")[2] + slash + rest
    if parts.query:
        shown += "?" + _masked_query(parts.query)
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", shown)
