"""The security policy: what content is recorded, and how it is redacted and truncated.

Pure: no OpenTelemetry here. A :class:`Policy` is a frozen set of rules, one capture mode per
kind of content; :meth:`Policy.render` turns a Python value into the string that may go on a
span, or ``None`` when nothing may.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from appsdk.errors import ConfigError
from appsdk.redaction import Redactor, is_secret_key
from appsdk.serialization import MAX_DEPTH, float_value, int_value, key_text, plain

if TYPE_CHECKING:
    from appsdk.config import Settings

__all__ = ["CaptureMode", "ContentKind", "Policy", "PolicyEngine"]


class CaptureMode(enum.StrEnum):
    """How much of one kind of content is recorded."""

    NONE = "none"
    """Nothing: the attribute is not written."""
    METADATA = "metadata"
    """Type, size, item count and a keyed hash; no text."""
    REDACTED = "redacted"
    """The content with secrets and PII replaced, truncated to the limits."""
    FULL = "full"
    """The content as given, truncated to the limits."""


ContentKind = Literal["inputs", "outputs", "messages", "completions", "metadata", "feedback"]
CONTENT_KINDS: tuple[ContentKind, ...] = (
    "inputs",
    "outputs",
    "messages",
    "completions",
    "metadata",
    "feedback",
)

SECRET_PLACEHOLDER = "[REDACTED:SECRET]"
_UNLIMITED = 2**62
# How far past the cut a text is still scanned: a secret that starts before the cut and runs on
# across it is recognised by its first bytes (no detector needs more than a few dozen; a PEM
# block cut short is redacted to its end).
_READ_PAST_CUT = 4096
# Texts at least this long are remembered by identity, the last _REMEMBERED of them per policy.
_REMEMBER_FROM = 256
_REMEMBERED = 32


class Policy(BaseModel):
    """What the application allows to be recorded, per kind of content.

    Kinds: ``inputs`` and ``outputs`` (of observed functions), ``messages`` (prompts sent to a
    model), ``completions`` (what the model answered), ``metadata``, ``feedback`` (comments).

    Example:
        >>> policy = Policy(inputs="full", completions="metadata", replacement="pseudonym")
        >>> policy.render("inputs", {"args": ["hi bob@example.com"], "kwargs": {}})
        '{"args": ["hi bob@example.com"], "kwargs": {}}'
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    inputs: CaptureMode = CaptureMode.REDACTED
    outputs: CaptureMode = CaptureMode.REDACTED
    messages: CaptureMode = CaptureMode.REDACTED
    completions: CaptureMode = CaptureMode.REDACTED
    metadata: CaptureMode = CaptureMode.REDACTED
    feedback: CaptureMode = CaptureMode.REDACTED
    replacement: Literal["label", "pseudonym"] = "label"
    """``label``: ``[REDACTED:EMAIL]``; ``pseudonym``: ``[EMAIL:3f9a1c2b]`` (keyed HMAC)."""
    pseudonym_key: SecretStr | None = None
    """HMAC key of pseudonyms and metadata hashes (``APPSDK_PSEUDONYM_KEY``); random if unset."""
    max_chars: int = Field(default=20_000, gt=0)
    """Longest string recorded per field; the rest is cut and marked."""
    max_items: int = Field(default=200, gt=0)
    """Most items recorded per list or mapping; the rest are cut and marked."""
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()
    """The application's own detectors as ``(LABEL, regex)``."""
    redactors: tuple[Callable[[str], str], ...] = ()
    """The application's own functions, applied to every recorded string after the built-ins."""
    secret_keys: tuple[str, ...] = ()
    """More key names whose values are always replaced (besides password, api_key, ...)."""
    baggage_allow: tuple[str, ...] = ()
    """Baggage keys the llm-d client may forward to the gateway (default: none)."""
    pseudonymize_user_ids: bool = False
    """Record user ids as keyed pseudonyms instead of as given."""

    _engine: PolicyEngine = PrivateAttr()

    @field_validator("patterns", mode="before")
    @classmethod
    def _compile_patterns(cls, value: Any) -> Any:
        items = value.items() if isinstance(value, Mapping) else value
        compiled = []
        for label, pattern in items:
            try:
                compiled.append((str(label), re.compile(pattern)))
            except re.error as exc:
                raise ValueError(f"pattern for {label!r} is not a valid regex: {exc}") from None
        return tuple(compiled)

    def model_post_init(self, context: Any, /) -> None:
        key = self.pseudonym_key.get_secret_value().encode() if self.pseudonym_key else None
        self._engine = PolicyEngine(self, key or secrets.token_bytes(32))

    @classmethod
    def none(cls) -> Policy:
        """A policy that records no content at all."""
        none: dict[str, Any] = dict.fromkeys(CONTENT_KINDS, CaptureMode.NONE)
        return cls(**none)

    @classmethod
    def full(cls, **overrides: Any) -> Policy:
        """A policy that records all content as given: no redaction, no truncation.

        What ``langfuse.observe`` records; pass ``max_chars`` / ``max_items`` to cut anyway.
        """
        values: dict[str, Any] = dict.fromkeys(CONTENT_KINDS, CaptureMode.FULL)
        values.update(max_chars=_UNLIMITED, max_items=_UNLIMITED)
        return cls(**{**values, **overrides})

    @classmethod
    def from_env(cls, **overrides: Any) -> Policy:
        """The policy of the settings in force (``APPSDK_CAPTURE`` and the ecosystem's
        switches), under ``overrides``: :meth:`from_settings` of the configured pipeline's
        settings, else of the environment's.

        Raises:
            ConfigError: ``APPSDK_CAPTURE`` names an unknown kind or mode.
        """
        from appsdk.config import settings_in_force

        settings = settings_in_force("capture", "capture_message_content", "pseudonym_key")
        return cls.from_settings(settings, **overrides)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Policy:
        """The policy ``settings`` give (``capture``, ``capture_message_content``,
        ``pseudonym_key``), under ``overrides``.

        ``capture`` is one mode for every kind (``redacted``) or per kind
        (``inputs=none,completions=metadata``). Without it,
        ``capture_message_content=NO_CONTENT`` (the OTel GenAI switch) turns messages and
        completions off. (``observe_io_capture``, langfuse's switch, is the decorator's: read
        where ``@observe`` reads its ``capture_input`` / ``capture_output``, as langfuse does.)

        Raises:
            ConfigError: ``capture`` names an unknown kind or mode.
        """
        values: dict[str, Any] = {}
        genai = settings.capture_message_content
        if genai is not None and genai.strip().upper() in ("NO_CONTENT", "FALSE", "0"):
            values.update(messages=CaptureMode.NONE, completions=CaptureMode.NONE)
        values.update(parse_capture(settings.capture))
        if settings.pseudonym_key is not None:
            values["pseudonym_key"] = settings.pseudonym_key
        values.update(overrides)
        return cls(**values)

    @property
    def engine(self) -> PolicyEngine:
        """The compiled form of this policy that does the work (built once)."""
        return self._engine

    @property
    def redactor(self) -> Redactor:
        return self._engine.redactor

    def mode(self, kind: ContentKind) -> CaptureMode:
        return self._engine.modes[kind]

    def render(self, kind: ContentKind, value: Any) -> str | None:
        """The span attribute string for ``value`` under this policy, or None to record nothing.

        Strings are recorded as given (redacted, truncated); anything else as JSON.
        """
        return self._engine.render(kind, value)

    def render_text(self, kind: ContentKind, text: str) -> str | None:
        """Like :meth:`render` for text that is already serialized (e.g. another SDK's JSON)."""
        return self._engine.render_text(kind, text)

    def redact_text(self, text: str) -> str:
        """Secrets and PII replaced; no truncation (for names, messages, user ids)."""
        return self._engine.redactor.redact(text)

    def prepare(self, value: Any, *, redact: bool = True) -> Any:
        """A JSON-ready copy of ``value``: secret keys replaced, strings redacted and truncated."""
        return self._engine.prepare(value, redact)

    def describe(self, value: Any) -> str:
        """The ``metadata`` mode record: type, size, item count, keyed hash. No content."""
        return self._engine.describe(value)

    def keyed_hash(self, text: str) -> str:
        return self._engine.keyed_hash(text)


class PolicyEngine:
    """A :class:`Policy` compiled for the hot path: plain attributes, no validation."""

    __slots__ = (
        "_recent",
        "error_mode",
        "key",
        "max_chars",
        "max_items",
        "metadata_mode",
        "modes",
        "pseudonymize_user_ids",
        "redactor",
        "secret_keys",
    )

    def __init__(self, policy: Policy, key: bytes) -> None:
        self.modes: dict[str, CaptureMode] = {kind: getattr(policy, kind) for kind in CONTENT_KINDS}
        self.metadata_mode = policy.metadata
        # Error and status messages quote what the function was given or produced: they follow
        # the outputs' mode (none/metadata: the error type only).
        self.error_mode = policy.outputs
        self.max_chars = policy.max_chars
        self.max_items = policy.max_items
        self.secret_keys = policy.secret_keys
        self.pseudonymize_user_ids = policy.pseudonymize_user_ids
        self.key = key
        self._recent: dict[int, tuple[str, str]] = {}
        self.redactor = Redactor(
            style=policy.replacement,
            key=key,
            patterns=policy.patterns,
            callables=policy.redactors,
        )

    def keyed_hash(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:16]

    def error_message(self, error_type: str, message: str) -> str:
        """What may be recorded of an error's message: all, redacted, or its type only."""
        mode = self.error_mode
        if mode is CaptureMode.FULL:
            return message or error_type
        if mode is CaptureMode.REDACTED:
            return self.redactor.redact(message) if message else error_type
        return error_type

    def identity(self, value: str, prefix: str) -> str:
        """A user or session id as recorded: a keyed pseudonym, or redacted like any text."""
        if self.pseudonymize_user_ids:
            return f"{prefix}-{self.keyed_hash(value)}"
        if self.metadata_mode is CaptureMode.FULL:
            return value
        return self.redactor.redact_repeated(value)

    def render(self, kind: str, value: Any) -> str | None:
        mode = self.modes[kind]
        if mode is CaptureMode.NONE:
            return None
        if mode is CaptureMode.METADATA:
            return self.describe(value)
        prepared = self.prepare(value, mode is CaptureMode.REDACTED)
        # A str (a str enum too, as langfuse does) is recorded as it is; anything else as JSON.
        if isinstance(value, str):
            return prepared  # type: ignore[no-any-return]
        return json.dumps(prepared)

    def render_text(self, kind: str, text: str) -> str | None:
        mode = self.modes[kind]
        if mode is CaptureMode.NONE:
            return None
        if mode is CaptureMode.METADATA:
            return self.describe(text)
        if mode is CaptureMode.REDACTED and text[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                return json.dumps(self.prepare(parsed, True))
        return self._string(text, mode is CaptureMode.REDACTED)

    def describe(self, value: Any) -> str:
        serialized = (
            value if isinstance(value, str) else json.dumps(self.prepare(value, False), default=str)
        )
        summary: dict[str, Any] = {"type": type(value).__name__, "chars": len(serialized)}
        if isinstance(value, Mapping | list | tuple):
            summary["items"] = len(value)
        summary["hash"] = self.keyed_hash(serialized)
        return json.dumps(summary)

    def prepare(
        self, value: Any, redact: bool, depth: int = 1, seen: frozenset[int] = frozenset()
    ) -> Any:
        """``value`` as JSON-able data, as langfuse serializes it, redacted and truncated.

        ``depth`` counts as langfuse's serializer does (the top-level value is 1); ``seen``
        holds the objects being recorded by their attributes, to break cycles.
        """
        kind = type(value)
        if kind is str:
            return self._string(value, redact)
        if value is None or kind is bool:
            return value
        if kind is int:
            safe = int_value(value)
            if type(safe) is str:
                return self._string(safe, redact)
            return self._integer(value) if redact else value
        if kind is float:
            return float_value(value)
        if kind is dict or kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                return f"<{kind.__name__}>"
            if kind is dict:
                return self._mapping(value, redact, depth, seen)
            return self._items(value, redact, depth, seen)
        converted = plain(value, depth)
        if isinstance(converted, dict) and not isinstance(value, dict):
            # An object recorded by its attributes: a cycle back to it is named, not followed.
            if id(value) in seen:
                return type(value).__name__
            seen = seen | {id(value)}
        if type(converted) is str:
            return self._string(converted, redact)
        return self.prepare(converted, redact, depth + 1, seen)

    def _items(self, items: Any, redact: bool, depth: int, seen: frozenset[int]) -> list[Any]:
        limit = self.max_items
        out = [self.prepare(item, redact, depth + 1, seen) for item in items[:limit]]
        if len(items) > limit:
            out.append(f"[truncated {len(items) - limit} items]")
        return out

    def _mapping(
        self, value: dict[Any, Any], redact: bool, depth: int, seen: frozenset[int]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extra = self.secret_keys
        limit = self.max_items
        for index, (key, item) in enumerate(value.items()):
            if index == limit:
                out["[truncated]"] = f"{len(value) - limit} more items"
                break
            name = key if type(key) is str else key_text(key)
            if not redact:
                out[name] = self.prepare(item, redact, depth + 1, seen)
                continue
            # A key can carry content too ({"bob@example.com": ...}); keys recur, so cached.
            name = self.redactor.redact_repeated(name)
            if item is not None and is_secret_key(name, extra):
                out[name] = SECRET_PLACEHOLDER
            else:
                out[name] = self.prepare(item, redact, depth + 1, seen)
        return out

    def _string(self, text: str, redact: bool) -> str:
        limit = self.max_chars
        if not redact:
            if len(text) > limit:
                return f"{text[:limit]}...[truncated {len(text) - limit} chars]"
            return text
        recent = self._recent
        remembered = recent.get(id(text))
        if remembered is not None and remembered[0] is text:
            return remembered[1]
        # Scrub before cutting, so a cut never leaves half a secret behind; what lies far past
        # the cut is never recorded, so it is not read either (a 1 MB text costs as 20 KB).
        scanned = text if len(text) <= limit + _READ_PAST_CUT else text[: limit + _READ_PAST_CUT]
        redacted = self.redactor.redact(scanned)
        if len(redacted) > limit or scanned is not text:
            dropped = max(len(redacted) - limit, 0) + len(text) - len(scanned)
            redacted = f"{redacted[:limit]}...[truncated {dropped} chars]"
        if len(text) >= _REMEMBER_FROM:
            # Nested observations pass the same objects on (a query in, an answer out): a
            # text is immutable, so its rendering is reused by identity (held, so never reused).
            if len(recent) >= _REMEMBERED:
                recent.clear()
            recent[id(text)] = (text, redacted)
        return redacted

    def _integer(self, value: int) -> int | str:
        if -1_000_000 < value < 1_000_000:
            return value
        text = str(value)
        redacted = self.redactor.redact(text)
        return value if redacted == text else redacted


def parse_capture(raw: str | None, variable: str = "APPSDK_CAPTURE") -> dict[str, CaptureMode]:
    """The capture modes ``raw`` (``APPSDK_CAPTURE``'s syntax) sets, per kind.

    Raises:
        ConfigError: naming ``variable``: an unknown kind or mode.
    """
    if raw is None or not raw.strip():
        return {}
    modes = {mode.value: mode for mode in CaptureMode}
    if "=" not in raw:
        mode = modes.get(raw.strip().lower())
        if mode is None:
            raise ConfigError(
                variable,
                f"unknown capture mode {raw.strip()!r}",
                "use none, metadata, redacted or full",
            )
        return dict.fromkeys(CONTENT_KINDS, mode)
    parsed: dict[str, CaptureMode] = {}
    for item in raw.split(","):
        kind, _, value = item.partition("=")
        kind, value = kind.strip(), value.strip().lower()
        if kind not in CONTENT_KINDS:
            raise ConfigError(
                variable,
                f"unknown content kind {kind!r}",
                f"use kinds from: {', '.join(CONTENT_KINDS)}",
            )
        if value not in modes:
            raise ConfigError(
                variable,
                f"unknown capture mode {value!r} for {kind}",
                "use none, metadata, redacted or full",
            )
        parsed[kind] = modes[value]
    return parsed
