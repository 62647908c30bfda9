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
from appsdk.recorder import SECRET_PLACEHOLDER, Walk
from appsdk.redaction import Redactor
from appsdk.serialization import count_render_error, float_value, unrenderable

if TYPE_CHECKING:
    from appsdk.config import Settings

__all__ = ["SECRET_PLACEHOLDER", "CaptureMode", "ContentKind", "Policy", "PolicyEngine"]


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

_UNLIMITED = 2**62
# Policy.full() records values as given, but one value never costs more than this: a graph of
# shared references (a DAG of documents) would otherwise expand without end.
_FULL_VALUE_CHARS = 8 * 1024 * 1024


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
    max_value_chars: int = Field(default=100_000, gt=0)
    """Most characters recorded of one whole value (an input, an output), however it nests;
    what lies past it is cut, marked, and never read."""
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

        What ``langfuse.observe`` records, up to 8 MiB of text per value; pass ``max_chars`` /
        ``max_items`` / ``max_value_chars`` to cut sooner.
        """
        values: dict[str, Any] = dict.fromkeys(CONTENT_KINDS, CaptureMode.FULL)
        values.update(max_chars=_UNLIMITED, max_items=_UNLIMITED, max_value_chars=_FULL_VALUE_CHARS)
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
        "error_mode",
        "key",
        "max_chars",
        "max_items",
        "max_value_chars",
        "metadata_mode",
        "modes",
        "pseudonymize_user_ids",
        "recent",
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
        self.max_value_chars = policy.max_value_chars
        self.secret_keys = policy.secret_keys
        self.pseudonymize_user_ids = policy.pseudonymize_user_ids
        self.key = key
        # Long texts rendered lately, by identity (see appsdk.recorder.render_string).
        self.recent: dict[int, tuple[str, str]] = {}
        self.redactor = Redactor(
            style=policy.replacement,
            key=key,
            patterns=policy.patterns,
            callables=policy.redactors,
        )

    def keyed_hash(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:16]

    def error_message(self, error_type: str, message: str) -> str:
        """What may be recorded of an error's message: all, redacted, or its type only (cut
        to ``max_chars`` either way)."""
        mode = self.error_mode
        if mode is CaptureMode.FULL:
            return self.string(message, False) if message else error_type
        if mode is CaptureMode.REDACTED:
            return self.string(message, True) if message else error_type
        return error_type

    def identity(self, value: str, prefix: str) -> str:
        """A user or session id as recorded: a keyed pseudonym, or redacted like any text."""
        if self.pseudonymize_user_ids:
            return f"{prefix}-{self.keyed_hash(value)}"
        if self.metadata_mode is CaptureMode.FULL:
            return value
        return self.redactor.redact_repeated(value)

    def render(self, kind: str, value: Any) -> str | None:
        """The attribute text of ``value`` under ``kind``'s mode, or None; never raises (what
        cannot be rendered, an application's redactor that raised say, is a placeholder)."""
        mode = self.modes[kind]
        if mode is CaptureMode.NONE:
            return None
        try:
            if mode is CaptureMode.METADATA:
                return self.describe(value)
            prepared = self.prepare(value, mode is CaptureMode.REDACTED)
            # A str (a str enum too, as langfuse does) is recorded as it is; else as JSON.
            if isinstance(value, str):
                return prepared  # type: ignore[no-any-return]
            return json.dumps(prepared)
        except Exception:
            count_render_error()
            return unrenderable(value)

    def render_text(self, kind: str, text: str) -> str | None:
        mode = self.modes[kind]
        if mode is CaptureMode.NONE:
            return None
        if mode is CaptureMode.METADATA:
            return self.describe(text)
        if mode is CaptureMode.REDACTED and text[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                pass
            else:
                return json.dumps(self.prepare(parsed, True))
        return self.string(text, mode is CaptureMode.REDACTED)

    def describe(self, value: Any) -> str:
        serialized = (
            value if isinstance(value, str) else json.dumps(self.prepare(value, False), default=str)
        )
        summary: dict[str, Any] = {"type": type(value).__name__, "chars": len(serialized)}
        if isinstance(value, Mapping | list | tuple):
            summary["items"] = len(value)
        summary["hash"] = self.keyed_hash(serialized)
        return json.dumps(summary)

    def prepare(self, value: Any, redact: bool) -> Any:
        """``value`` as JSON-able data, as langfuse serializes it, redacted and cut: one
        bounded walk (:class:`appsdk.recorder.Walk`)."""
        return Walk(self, redact).value(value)

    def string(self, text: str, redact: bool) -> str:
        """One text as recorded: redacted (when ``redact``) and cut to ``max_chars``."""
        return Walk(self, redact).text(text)

    def large_float(self, value: float) -> float | str:
        """A float of 13+ digits as recorded in the redacted mode: read as its digits."""
        text = repr(value)
        redacted = self.redactor.redact(text)
        return float_value(value) if redacted == text else redacted

    def integer(self, value: int) -> int | str:
        """An int as recorded in the redacted mode: a long one may be a card or a phone."""
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
