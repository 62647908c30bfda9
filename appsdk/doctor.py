"""``appsdk doctor``: configuration and reachability checks, each with what to fix.

Its output is meant to be pasted into a ticket: URLs are shown through
:func:`appsdk.errors.safe_url`, and no key or header value is ever part of a check's text.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from appsdk.config import Settings, load_settings
from appsdk.errors import ConfigError, safe_url
from appsdk.preflight import preflight

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings | None = None, timeout_s: float = 5.0) -> list[Check]:
    """Run every check; never raises, never prints a secret.

    A configuration ``load_settings`` rejects is one failed check, the ConfigError's own
    line (variable, problem, fix): nothing is contacted with it. Then each problem of what
    the settings name (files, folders, keys: :func:`appsdk.preflight.preflight`, which
    ``configure()`` runs too) is a failed check with the message ``configure()`` raises.
    """
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            return [Check("configuration", False, str(exc))]
    # What configure() checks of the files, folders and keys the settings name, each
    # failure as configure() would raise it.
    problems = preflight(settings).problems
    checks = [Check("configuration", False, str(exc)) for exc in problems.values()]
    if not checks:
        checks.append(Check("configuration", True, "settings are valid"))
    for spec in settings.exporters:
        if spec.kind == "langfuse":
            checks.append(_check_langfuse(settings, timeout_s))
        elif spec.kind == "otlp" and spec.url is not None:
            checks.append(_check_otlp(spec.url, spec.headers, timeout_s))
        elif "store_path" not in problems:
            checks.append(Check("local store", True, f"traces go to {settings.store_path}"))
    if not settings.exporters:
        checks.append(
            Check(
                "destinations",
                False,
                "no exporter is enabled; set LANGFUSE_* or "
                "OTEL_EXPORTER_OTLP_ENDPOINT, or APPSDK_LOCAL_STORE=auto",
            )
        )
    return checks


def _check_langfuse(settings: Settings, timeout_s: float) -> Check:
    assert settings.langfuse_public_key is not None and settings.langfuse_secret_key is not None
    auth = httpx.BasicAuth(
        settings.langfuse_public_key, settings.langfuse_secret_key.get_secret_value()
    )
    url = f"{settings.langfuse_url}/api/public/projects"
    shown = safe_url(settings.langfuse_url)
    try:
        response = httpx.get(url, auth=auth, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # its message would show the URL
        return Check(
            "langfuse",
            False,
            f"{shown} {_why_unreachable(exc)}; check LANGFUSE_BASE_URL and the network",
        )
    if response.status_code in (401, 403):
        return Check(
            "langfuse",
            False,
            f"{shown} rejected the keys (HTTP "
            f"{response.status_code}); check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY",
        )
    if response.status_code >= 400:
        return Check(
            "langfuse",
            False,
            f"{safe_url(url)} answered HTTP {response.status_code}; "
            "is LANGFUSE_BASE_URL a Langfuse server?",
        )
    return Check("langfuse", True, f"{shown} accepted the keys")


def _check_otlp(url: str, headers: Mapping[str, str], timeout_s: float) -> Check:
    name = f"otlp {safe_url(url)}"
    try:
        # An empty export request is valid OTLP and proves the path and the credentials.
        response = httpx.post(
            url,
            content=b"",
            timeout=timeout_s,
            headers={**headers, "content-type": "application/x-protobuf"},
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # its message would show the URL
        return Check(
            name,
            False,
            f"{_why_unreachable(exc)}; check the "
            "OTEL_EXPORTER_OTLP_ENDPOINT value and that the collector runs",
        )
    if response.status_code in (401, 403):
        return Check(name, False, "rejected the credentials; check OTEL_EXPORTER_OTLP_HEADERS")
    if response.status_code == 404:
        return Check(
            name,
            False,
            "no OTLP endpoint at this path; a base URL belongs in "
            "OTEL_EXPORTER_OTLP_ENDPOINT, a full one in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        )
    if response.status_code >= 400:
        return Check(name, False, f"answered HTTP {response.status_code}")
    return Check(name, True, "accepts OTLP/HTTP")


def _why_unreachable(exc: Exception) -> str:
    """What went wrong, in words that point at the fix; never the exception's own message
    (it quotes the URL)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            # The classic: https:// to a collector's plain-HTTP port (4318 usually is).
            return (
                f"is unreachable: the TLS handshake failed ({type(cause).__name__}); if the "
                "server speaks plain HTTP on this port, write http://, not https://"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return f"is unreachable: no answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return (
            f"is unreachable: the server did not answer HTTP ({type(exc).__name__}); "
            "if it expects TLS, write https://"
        )
    return f"is unreachable ({type(exc).__name__})"
