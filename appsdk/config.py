"""Settings, resolved once: argument > ``APPSDK_*`` > the ecosystem's variables > default.

Every variable appsdk reads is declared here, on the field it sets, with its default and doc
(only the llm-d client reads ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` itself, as openai does).
The ecosystem's own variables (``LANGFUSE_*``, ``OTEL_*``) work as users already set them;
``APPSDK_*`` exists only for what is new. What a configuration exports to is computed here
too, once: :attr:`Settings.exporters`.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticUseDefault

from appsdk.errors import ConfigError, safe_url

if TYPE_CHECKING:
    from appsdk.spool import Destination

__all__ = [
    "FEEDBACK_KEY_MIN_CHARS",
    "KNOWN_SAMPLERS",
    "ExporterSpec",
    "Settings",
    "load_settings",
    "environment_settings",
    "parse_headers",
    "settings_in_force",
]

KNOWN_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

DEFAULT_LANGFUSE_BASE_URL = "https://cloud.langfuse.com"
FEEDBACK_KEY_MIN_CHARS = 16
"""The shortest key feedback tokens may be signed with (``feedback_secret``)."""

# Upper bound of every timeout and delay: a larger one is a typo (ms for s), and beyond
# threading.TIMEOUT_MAX a wait raises OverflowError, at exit of all places.
ONE_DAY_S = 24 * 3600.0


def _env(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


_URL_FIELDS = frozenset({"langfuse_base_url", "otlp_traces_endpoint", "otlp_endpoint"})
# Read as ``os.environ.get(...) or default`` before they were settings: empty is unset.
_EMPTY_IS_UNSET = (
    "capture",
    "capture_message_content",
    "pseudonym_key",
    "observe_io_capture",
    "prices",
    "prompts_dir",
    "feedback_secret",
    "feedback_outbox",
)


class Settings(BaseModel):
    """Every setting of appsdk, with the variables that set it (the first one set wins).

    :func:`load_settings` (which ``configure()`` calls) reads the variables; ``Settings(...)``
    itself takes values only. Its ``repr`` and ``str`` show no secret: keys and headers are
    masked, URLs pass through :func:`appsdk.errors.safe_url`.
    """

    # hide_input_in_errors: a ValidationError of Settings(...) must not echo a key or URL.
    model_config = ConfigDict(
        frozen=True, populate_by_name=True, extra="forbid", hide_input_in_errors=True
    )

    langfuse_public_key: str | None = _env("LANGFUSE_PUBLIC_KEY")
    """Langfuse project public key (``pk-lf-...``); with the secret key, Langfuse export is on."""
    langfuse_secret_key: SecretStr | None = _env("LANGFUSE_SECRET_KEY")
    """Langfuse project secret key (``sk-lf-...``). Never logged, never on a span."""
    langfuse_base_url: str | None = _env("LANGFUSE_BASE_URL", "LANGFUSE_HOST")
    """Langfuse server URL; ``LANGFUSE_HOST`` is the deprecated name. Default: Langfuse Cloud."""
    environment: str | None = _env("LANGFUSE_TRACING_ENVIRONMENT")
    """Langfuse environment: ``[a-z0-9_-]``, at most 40 characters, not starting with langfuse."""
    release: str | None = _env("LANGFUSE_RELEASE")
    """Release or version of the application, recorded on every trace."""
    sample_rate: float | None = _env("LANGFUSE_SAMPLE_RATE")
    """Fraction of traces kept, 0..1 (parent-based trace-id ratio). Default 1."""
    service_name: str | None = _env("OTEL_SERVICE_NAME")
    """``service.name`` of the resource (``OTEL_RESOURCE_ATTRIBUTES`` is read by the OTel SDK)."""
    traces_sampler: str | None = _env("OTEL_TRACES_SAMPLER")
    """One of the standard OTel sampler names, e.g. ``parentbased_traceidratio``."""
    traces_sampler_arg: str | None = _env("OTEL_TRACES_SAMPLER_ARG")
    """The ratio for the ``*traceidratio`` samplers."""
    otlp_traces_endpoint: str | None = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    """Full URL of an extra OTLP/HTTP traces endpoint (used as given)."""
    otlp_endpoint: str | None = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
    """Base URL of an extra OTLP/HTTP endpoint; ``/v1/traces`` is appended."""
    otlp_headers: SecretStr | None = _env(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"
    )
    """``key=value,key2=value2`` headers for the OTLP endpoint above (never sent to Langfuse,
    never shown: they often carry an ``authorization`` or a tenant id)."""
    otlp_endpoints: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("APPSDK_OTLP_ENDPOINTS")
    )
    """More OTLP/HTTP traces endpoints (full URLs, comma-separated), for dual export."""
    otlp_compression: Literal["gzip", "none"] = Field(
        default="none",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"
        ),
    )
    """Compression of requests to the OTLP endpoints above: ``gzip`` or ``none`` (as in
    OpenTelemetry's exporters, the default). Export to Langfuse is always gzip-compressed."""
    local_store: Literal["auto", "always", "never"] = Field(
        default="auto", validation_alias=AliasChoices("APPSDK_LOCAL_STORE")
    )
    """The embedded SQLite store: ``auto`` (only when no backend is configured), always, never."""
    store_path: Path = Field(
        default=Path(".appsdk/traces.db"), validation_alias=AliasChoices("APPSDK_STORE_PATH")
    )
    """Where the embedded store lives."""
    sampling: str | None = _env("APPSDK_SAMPLING")
    """Sampling rules and retention: a JSON object, or a JSON file's path (docs/sampling.md)."""
    tracing_enabled: bool = Field(
        default=True, validation_alias=AliasChoices("LANGFUSE_TRACING_ENABLED")
    )
    """``false``: tracing is off, as in langfuse (decorated code runs untraced)."""
    instrument_threads: bool = Field(
        default=True, validation_alias=AliasChoices("APPSDK_INSTRUMENT_THREADS")
    )
    """Executor and thread hand-offs (``loop.run_in_executor``, ``ThreadPoolExecutor.submit``,
    ``threading.Thread``) stay in the caller's trace: OpenTelemetry's threading
    instrumentation, installed once per process by ``configure()``. ``false``: not installed."""
    metrics: bool = Field(default=True, validation_alias=AliasChoices("APPSDK_METRICS"))
    """Export the llm-d client's GenAI metrics to the OTLP endpoint when the app has no
    MeterProvider of its own."""
    spool: bool = Field(default=True, validation_alias=AliasChoices("APPSDK_SPOOL"))
    """Keep batches a backend cannot take now on disk and resend them (else they are dropped)."""
    spool_path: Path = Field(
        default=Path(".appsdk/spool.db"), validation_alias=AliasChoices("APPSDK_SPOOL_PATH")
    )
    """Where the spool lives; the next process with the same configuration drains it."""
    spool_max_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, validation_alias=AliasChoices("APPSDK_SPOOL_MAX_BYTES")
    )
    """Size bound of the spool; the oldest batches are evicted (and counted) beyond it."""
    spool_max_age_s: float = Field(
        default=24 * 3600.0, gt=0, validation_alias=AliasChoices("APPSDK_SPOOL_MAX_AGE_S")
    )
    """Age bound of the spool; older batches are evicted (and counted)."""
    export_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=ONE_DAY_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("APPSDK_EXPORT_TIMEOUT_S"),
    )
    """Deadline of one export request to a backend."""
    shutdown_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=ONE_DAY_S,
        allow_inf_nan=False,
        validation_alias=AliasChoices("APPSDK_SHUTDOWN_TIMEOUT_S"),
    )
    """How long ``shutdown()`` (and process exit) may wait for pending spans."""
    max_queue_size: int = Field(
        default=2048,
        gt=0,
        validation_alias=AliasChoices("APPSDK_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE"),
    )
    """Spans buffered per exporter before the oldest are dropped (and counted)."""
    max_export_batch_size: int = Field(
        default=512, gt=0, validation_alias=AliasChoices("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    )
    """Spans per export request."""
    schedule_delay_ms: int = Field(
        default=1000,
        ge=0,
        le=int(ONE_DAY_S * 1000),
        validation_alias=AliasChoices("OTEL_BSP_SCHEDULE_DELAY"),
    )
    """Longest a span waits in the queue before an export starts."""
    capture: str | None = _env("APPSDK_CAPTURE")
    """What content is recorded: one mode for every kind (``none``, ``metadata``, ``redacted``,
    ``full``), or per kind, e.g. ``inputs=none,completions=metadata``. Default: redacted."""
    capture_message_content: str | None = _env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    """The OTel GenAI switch: ``NO_CONTENT`` (or ``false``, ``0``) records no messages and no
    completions, unless ``APPSDK_CAPTURE`` names them."""
    pseudonym_key: SecretStr | None = _env("APPSDK_PSEUDONYM_KEY")
    """HMAC key of pseudonyms and metadata hashes; random per process if unset."""
    observe_io_capture: bool = Field(
        default=True, validation_alias=AliasChoices("LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED")
    )
    """``false``: ``@observe`` records no inputs and outputs unless a function asks for them
    (``capture_input=True``); read when a function is decorated, as langfuse reads it."""
    prices: Path | None = _env("APPSDK_PRICES")
    """A JSON or TOML price table for the cost of llm-d client calls (loaded once)."""
    prompts_dir: Path = Field(
        default=Path("prompts"), validation_alias=AliasChoices("APPSDK_PROMPTS_DIR")
    )
    """The local prompt folder ``get_prompt`` reads when Langfuse is not configured."""
    feedback_secret: SecretStr | None = _env("APPSDK_FEEDBACK_SECRET")
    """Keys feedback tokens are signed with: comma-separated, newest last (it signs, all of
    them verify), at least 16 characters each (:data:`FEEDBACK_KEY_MIN_CHARS`)."""
    feedback_outbox: Path = Field(
        default=Path(".appsdk/feedback.db"), validation_alias=AliasChoices("APPSDK_FEEDBACK_OUTBOX")
    )
    """The feedback outbox: ratings wait here until Langfuse has them."""

    @field_validator(*_EMPTY_IS_UNSET, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        # An empty argument too, as an empty variable (which is not even read).
        if isinstance(value, str):
            if not value.strip():
                raise PydanticUseDefault()
            if info.field_name == "observe_io_capture":
                return value.strip()  # as langfuse reads its switch
        return value

    @field_validator("otlp_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                value = safe_url(value)
            elif name == "otlp_endpoints":
                value = tuple(safe_url(url) for url in value)
            yield name, value

    @property
    def langfuse_enabled(self) -> bool:
        return self.langfuse_public_key is not None and self.langfuse_secret_key is not None

    @property
    def langfuse_url(self) -> str:
        return (self.langfuse_base_url or DEFAULT_LANGFUSE_BASE_URL).rstrip("/")

    def extra_otlp_endpoints(self) -> list[tuple[str, dict[str, str]]]:
        """The extra OTLP endpoints as ``(url, headers)``; OTEL_* headers go to the OTEL_* one."""
        endpoints: list[tuple[str, dict[str, str]]] = []
        headers = self.otlp_headers.get_secret_value() if self.otlp_headers else None
        if self.otlp_traces_endpoint:
            endpoints.append((self.otlp_traces_endpoint, parse_headers(headers)))
        elif self.otlp_endpoint:
            # The path goes before a query (``?api_key=``) the base URL may carry.
            parts = urlsplit(self.otlp_endpoint)
            url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/v1/traces"))
            endpoints.append((url, parse_headers(headers)))
        endpoints.extend((url, {}) for url in self.otlp_endpoints)
        return endpoints

    def langfuse_destination(self) -> Destination:
        """Langfuse as a destination: its URL and project keys (the spool's and outbox's key).

        Raises:
            ConfigError: the Langfuse keys are not set.
        """
        from appsdk.spool import exporter_key

        if self.langfuse_public_key is None or self.langfuse_secret_key is None:
            raise ConfigError(
                "LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY",
                "are not set, so there is no Langfuse destination",
                "set both Langfuse keys of the project (Settings > API keys)",
            )
        keys = {
            "public_key": self.langfuse_public_key,
            "secret_key": self.langfuse_secret_key.get_secret_value(),
        }
        return exporter_key("langfuse", self.langfuse_url, keys, project=self.langfuse_public_key)

    def destinations(self) -> list[Destination]:
        """Every backend the pipeline exports to, named as its exporter is (langfuse, otlp,
        otlp-1, ...): what this configuration sends from the spool."""
        return [spec.destination for spec in self.exporters if spec.destination is not None]

    @property
    def exporters(self) -> tuple[ExporterSpec, ...]:
        """The pipeline's exporters, in order: Langfuse, the OTLP endpoints, the local store.

        Computed once per configuration; the runtime, the spool commands, ``appsdk doctor``
        and the metrics exporter all read this list.
        """
        return _exporters(self)

    @property
    def local_store_enabled(self) -> bool:
        return any(spec.kind == "local" for spec in self.exporters)

    @property
    def feedback_keys(self) -> list[str]:
        """The keys of ``feedback_secret``, newest last; empty when it is unset."""
        raw = self.feedback_secret.get_secret_value() if self.feedback_secret else ""
        return [key.strip() for key in raw.split(",") if key.strip()]


@dataclasses.dataclass(frozen=True, slots=True)
class ExporterSpec:
    """One exporter of the pipeline, as the settings describe it (:attr:`Settings.exporters`)."""

    name: str
    """How ``appsdk.stats()``, logs and the spool call it: langfuse, otlp, otlp-1, ..., local."""
    kind: Literal["langfuse", "otlp", "local"]
    url: str | None
    """Where its OTLP requests go (the full traces URL); None for the local store."""
    headers: Mapping[str, str] = dataclasses.field(repr=False)
    """Sent with every request: the OTLP endpoint's own headers, Langfuse's ingestion version."""
    auth: tuple[str, SecretStr] | None = dataclasses.field(repr=False)
    """Basic auth (Langfuse's project keys), or None."""
    spans: Literal["all", "langfuse"]
    """Which spans it takes: all of them, or those Langfuse shows (its span filter)."""
    spooled: bool
    """Whether batches it cannot send now wait in the spool (``APPSDK_SPOOL``)."""
    destination: Destination | None
    """Its key in the spool: URL and credentials (None for the local store)."""
    metrics: bool = False
    """Whether the llm-d client's GenAI metrics go to this endpoint too (``APPSDK_METRICS``)."""
    gzip: bool = True
    """Whether its requests are gzip-compressed (Langfuse's always; an OTLP endpoint's as
    ``OTEL_EXPORTER_OTLP_COMPRESSION`` says)."""

    def __repr__(self) -> str:
        # Like Settings: no header value or key, and the URL without its credentials.
        url = safe_url(self.url) if self.url is not None else None
        return (
            f"ExporterSpec(name={self.name!r}, kind={self.kind!r}, url={url!r}, "
            f"spans={self.spans!r}, spooled={self.spooled}, metrics={self.metrics}, "
            f"gzip={self.gzip})"
        )


# Keyed by the settings' values (Settings is frozen and hashable): each configuration's list
# is computed once, however often it is read.
@functools.lru_cache(maxsize=16)
def _exporters(settings: Settings) -> tuple[ExporterSpec, ...]:
    from appsdk.spool import exporter_key

    specs: list[ExporterSpec] = []
    if settings.langfuse_public_key is not None and settings.langfuse_secret_key is not None:
        specs.append(
            ExporterSpec(
                name="langfuse",
                kind="langfuse",
                url=f"{settings.langfuse_url}/api/public/otel/v1/traces",
                headers={"x-langfuse-ingestion-version": "4"},
                auth=(settings.langfuse_public_key, settings.langfuse_secret_key),
                spans="langfuse",
                spooled=settings.spool,
                destination=settings.langfuse_destination(),
            )
        )
    # The metrics follow the ecosystem's variables (OTEL_EXPORTER_OTLP_*), not appsdk's list.
    from_otel = bool(settings.otlp_traces_endpoint or settings.otlp_endpoint)
    gzip = settings.otlp_compression == "gzip"
    for index, (url, headers) in enumerate(settings.extra_otlp_endpoints()):
        name = "otlp" if index == 0 else f"otlp-{index}"
        specs.append(
            ExporterSpec(
                name=name,
                kind="otlp",
                url=url,
                headers=headers,
                auth=None,
                spans="all",
                spooled=settings.spool,
                destination=exporter_key(name, url, headers),
                metrics=index == 0 and from_otel and settings.metrics,
                gzip=gzip,
            )
        )
    if settings.local_store == "always" or (settings.local_store == "auto" and not specs):
        specs.append(
            ExporterSpec(
                name="local",
                kind="local",
                url=None,
                headers={},
                auth=None,
                spans="all",
                spooled=False,
                destination=None,
            )
        )
    return tuple(specs)


_HEADERS_VARIABLES = "OTEL_EXPORTER_OTLP_TRACES_HEADERS / OTEL_EXPORTER_OTLP_HEADERS"
# RFC 9110: a field name is a token; a value is visible ASCII, spaces and tabs. A CR or LF
# would split the request (h11 refuses to send it), and httpx encodes values as ASCII.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# What OpenTelemetry's syntax takes only URL-encoded in a value: it would drop the entry.
_ENCODE_FIRST = re.compile(r'["\\;\t]')
_WORD_NAME = re.compile(r"[A-Za-z_-]{1,40}")


def parse_headers(raw: str | None) -> dict[str, str]:
    """Parse ``OTEL_EXPORTER_OTLP_HEADERS`` (``k=v,k2=v2``, values URL-encoded) as
    OpenTelemetry's own exporters do, once every entry is checked.

    Raises:
        ConfigError: an entry has no name, a name is not an HTTP token, or a value (once
            decoded) holds a line break, another control character or non-ASCII text, or
            (not encoded) a character the syntax takes only URL-encoded. The message names
            the entry (and a valid name), never a value.
    """
    checked: list[str] = []
    for number, item in enumerate((raw or "").split(","), start=1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        name = unquote(key.strip())
        if not sep or not name:
            # Not even the key is shown: without its "=", an entry may be a bare token.
            raise ConfigError(
                _HEADERS_VARIABLES,
                f"entry {number} has no name before an '=' (values are not shown)",
                "write headers as key=value pairs separated by commas",
            )
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                _HEADERS_VARIABLES,
                f"the name of entry {number} is not a valid HTTP header name "
                "(names and values are not shown)",
                "use letters, digits and - _ . in header names, e.g. x-api-key=...",
            )
        # The name helps find the entry; one with digits may be a token, so not shown.
        which = f"header {name.lower()!r}" if _WORD_NAME.fullmatch(name) else "the header"
        if not _HEADER_VALUE.fullmatch(unquote(value.strip())):
            raise ConfigError(
                _HEADERS_VARIABLES,
                f"the value of {which} (entry {number}) holds a line break, "
                "another control character or non-ASCII text (values are not shown)",
                "remove it: a header value is one line of ASCII text",
            )
        if _ENCODE_FIRST.search(value.strip()):
            raise ConfigError(
                _HEADERS_VARIABLES,
                f"the value of {which} (entry {number}) holds a double quote, semicolon, "
                "backslash or tab, which OpenTelemetry takes only URL-encoded "
                "(values are not shown)",
                "URL-encode it: %22 for a double quote, %3B for ;, %5C for \\, %09 for a tab",
            )
        checked.append(f"{key.strip()}={value.strip()}")
    if not checked:
        return {}
    from opentelemetry.util.re import parse_env_headers  # the OTel API's (a light module)

    # The syntax (entries, URL-decoding, lowercase names) is OpenTelemetry's: appsdk sends the
    # headers its exporters would. Every entry passed the checks above, so it drops none (it
    # would log a dropped entry, value and all).
    return dict(parse_env_headers(",".join(checked), liberal=True))


_FIELD_OF_VARIABLE = {
    alias: name
    for name, info in Settings.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
    for alias in info.validation_alias.choices
    if isinstance(alias, str)
}
_VARIABLES: dict[str, str] = {}
for _alias, _name in _FIELD_OF_VARIABLE.items():
    _VARIABLES[_name] = f"{_VARIABLES.get(_name, _name)} / {_alias}"


def _from_environment(fields: tuple[str, ...] = ()) -> dict[str, str]:
    """Each field's value (of ``fields`` only, if given) from the first of its variables set."""
    environ = os.environ
    values: dict[str, str] = {}
    for alias, field in _FIELD_OF_VARIABLE.items():
        if fields and field not in fields:
            continue
        if field not in values and alias in environ:
            if field in _EMPTY_IS_UNSET and not environ[alias].strip():
                continue
            values[field] = environ[alias]
    return values


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings from arguments and the environment, and check them.

    Raises:
        ConfigError: a value is malformed or settings contradict each other.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            unknown[0],
            "is not a setting of appsdk.configure()",
            f"use one of: {', '.join(sorted(Settings.model_fields))}",
        )
    return _resolve({**_from_environment(), **given})


def settings_in_force(*fields: str) -> Settings:
    """The settings in force: the configured pipeline's, else the environment's now.

    What reads a setting outside ``configure()`` (``Policy.from_env``, ``get_prompt``, the
    feedback tokens and outbox, the price table) reads it here, so the precedence is the
    same everywhere: argument (to ``configure()``) > variable > default. Unconfigured, the
    environment's settings are made once per state of the environment.

    Args:
        fields: unconfigured, read only these fields' variables (every other field keeps its
            default): one reader is not failed by another setting's bad value, which
            ``configure()`` reports. Default: all of them, as :func:`load_settings`.

    Raises:
        ConfigError: a variable read is malformed.
    """
    # Never imports the runtime (and OpenTelemetry's SDK) for this: not loaded, not configured.
    runtime = sys.modules.get("appsdk.runtime")
    current = getattr(runtime, "current", None)
    pipeline = current() if current is not None else None
    if pipeline is not None:
        settings: Settings = pipeline.settings
        return settings
    return environment_settings(*fields)


def environment_settings(*fields: str) -> Settings:
    """The settings of the environment now (of ``fields``' variables only, if given): what
    :func:`settings_in_force` is when nothing is configured. A field a variable set is in
    the result's ``model_fields_set``.

    Raises:
        ConfigError: a variable read is malformed.
    """
    values = _from_environment(fields)
    state = tuple(sorted(values.items()))
    known = _ENVIRONMENT_SETTINGS.get(fields)
    if known is not None and known[0] == state:
        return known[1]
    settings = _resolve(values)
    _ENVIRONMENT_SETTINGS[fields] = (state, settings)
    return settings


# Per set of fields read: the environment's state and the settings made from it.
_ENVIRONMENT_SETTINGS: dict[tuple[str, ...], tuple[tuple[tuple[str, str], ...], Settings]] = {}


def _resolve(values: dict[str, Any]) -> Settings:
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = str(error["loc"][0]) if error["loc"] else "settings"
        field = _FIELD_OF_VARIABLE.get(where, where)
        raise ConfigError(
            _VARIABLES.get(field, where), error["msg"].lower(), _fix_for(field)
        ) from None
    _check(settings)
    return settings


def _fix_for(field: str) -> str:
    fixes = {
        "sample_rate": "give a number between 0 and 1, e.g. 0.25",
        "max_queue_size": "give a positive whole number",
        "local_store": "use auto, always or never",
        "export_timeout_s": "give a number of seconds above 0 and at most 86400 (a day), e.g. 5",
        "shutdown_timeout_s": "give a number of seconds above 0 and at most 86400 (a day), e.g. 2",
        "schedule_delay_ms": "give milliseconds from 0 to 86400000 (a day), e.g. 1000",
        "otlp_compression": "use gzip or none",
        "observe_io_capture": "use true or false",
        "instrument_threads": "use true or false",
    }
    return fixes.get(field, "correct or unset the value")


def _check(settings: Settings) -> None:
    if (settings.langfuse_public_key is None) != (settings.langfuse_secret_key is None):
        missing = (
            "LANGFUSE_SECRET_KEY"
            if settings.langfuse_secret_key is None
            else ("LANGFUSE_PUBLIC_KEY")
        )
        raise ConfigError(
            missing,
            "is not set, but its partner key is",
            "set both Langfuse keys of the project (Settings > API keys), or neither",
        )
    if settings.sample_rate is not None and not (
        math.isfinite(settings.sample_rate) and 0.0 <= settings.sample_rate <= 1.0
    ):
        raise ConfigError(
            "LANGFUSE_SAMPLE_RATE / sample_rate",
            f"must be between 0 and 1, got {settings.sample_rate}",
            "give a fraction of traces to keep, e.g. 0.25",
        )
    _check_endpoints(settings)
    if settings.capture is not None:
        from appsdk.policy import parse_capture  # only when set: the policy is not needed here

        parse_capture(settings.capture, _VARIABLES["capture"])
    if settings.traces_sampler is not None:
        _check_sampler(settings.traces_sampler, settings.traces_sampler_arg)
    env = settings.environment
    if env is not None and (
        len(env) > 40
        or env.startswith("langfuse")
        or not all(c.isascii() and (c.islower() or c.isdigit() or c in "_-") for c in env)
    ):
        raise ConfigError(
            "LANGFUSE_TRACING_ENVIRONMENT / environment",
            f"{env!r} is not a valid Langfuse environment",
            "use at most 40 characters of [a-z0-9_-], not starting with 'langfuse'",
        )


def _check_endpoints(settings: Settings) -> None:
    """Every URL and the OTLP headers are usable, before anything parses or sends them."""
    for field in ("langfuse_base_url", "otlp_traces_endpoint", "otlp_endpoint"):
        url = getattr(settings, field)
        if url is not None:
            _check_url(_VARIABLES[field], url)
    for number, url in enumerate(settings.otlp_endpoints, start=1):
        _check_url(f"{_VARIABLES['otlp_endpoints']} (entry {number})", url)
    if settings.otlp_headers is not None:
        parse_headers(settings.otlp_headers.get_secret_value())


_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
_URL_FIX = "give a full URL such as https://cloud.langfuse.com or http://127.0.0.1:4318"


def _check_url(field: str, url: str) -> None:
    """Raise a ConfigError naming ``field`` if ``url`` is not one httpx can send to.

    The URL is shown (through safe_url) only where it parsed: a URL that does not parse
    cannot be trusted to have its credentials found and masked.
    """
    problem, fix = _url_problem(url)
    if problem is not None:
        raise ConfigError(field, problem, fix)


def _url_problem(url: str) -> tuple[str | None, str]:
    if _SPACE_OR_CONTROL.search(url):
        # urlsplit silently drops tabs and line breaks; the exporter would not.
        return (
            f"'{safe_url(url)}' contains a space, line break or other control character",
            "remove it",
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # its message may quote the host
        if "[" in url or "]" in url:
            return (
                "has an unclosed or malformed [IPv6] host",
                "write an IPv6 host in brackets, e.g. http://[::1]:4318",
            )
        return "cannot be parsed as a URL", _URL_FIX
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{safe_url(url)}' is not an http(s) URL with a host", _URL_FIX
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        given = parts.netloc.rpartition("@")[2].rpartition("]")[2].rpartition(":")[2]
        # Only digits are quoted: a port position is where a mistyped password can land.
        shown = f"port {given}" if given.isascii() and given.isdigit() else "a port"
        return (
            f"has {shown if len(shown) <= 16 else 'a port'}, which is not a number from 1 to 65535",
            "give the port the backend listens on (OTLP/HTTP: 4318), or none for the default",
        )
    if not _host_accepted(parts.hostname, url):
        return "is not a URL an HTTP client accepts (check the host name)", _URL_FIX
    return None, _URL_FIX


_ASCII_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*\.?")


def _host_accepted(host: str, url: str) -> bool:
    """Whether httpx would send to this host; httpx is imported only for an unusual one."""
    if ":" in host:
        return True  # an IPv6 literal urlsplit already parsed
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    if _ASCII_HOST.fullmatch(host) and not host.lower().startswith("xn--"):
        return True
    import httpx  # IDNA names: httpx's own rules decide (rare, and off the usual path)

    try:
        httpx.URL(url).host  # noqa: B018 - the host is decoded (IDNA) only when read
    except (httpx.InvalidURL, ValueError):  # an IDNA error is a ValueError, not InvalidURL
        return False
    return True


def _check_sampler(name: str, arg: str | None) -> None:
    if name not in KNOWN_SAMPLERS:
        raise ConfigError(
            "OTEL_TRACES_SAMPLER",
            f"unknown sampler {name!r}",
            f"use one of: {', '.join(KNOWN_SAMPLERS)}",
        )
    if name.endswith("traceidratio") and arg is not None:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = math.nan
        if not (0.0 <= ratio <= 1.0):
            raise ConfigError(
                "OTEL_TRACES_SAMPLER_ARG",
                f"{arg!r} is not a ratio between 0 and 1",
                "give a number such as 0.1",
            )
