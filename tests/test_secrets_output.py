"""Configuration secrets are never printed: not in logs, warnings, ``appsdk doctor``,
``appsdk spool status``, error messages or the settings' ``repr``; the host always is."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

import appsdk
from appsdk import ConfigError
from appsdk.cli import app as cli
from appsdk.config import Settings, load_settings
from appsdk.errors import safe_url

PLANTED = (
    "sk-lf-planted-secret",
    "planted-lf-password",
    "planted-otlp-password",
    "planted-query-key",
    "planted-query-token",
    "planted-bearer-token",
    "planted-tenant",
)


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reserved: socket.socket) -> str:
    """Credentials in every URL and header variable, every endpoint unreachable."""
    port = reserved.getsockname()[1]
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-public")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-planted-secret")
    monkeypatch.setenv("LANGFUSE_BASE_URL", f"http://lf:planted-lf-password@127.0.0.1:{port}")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        f"http://me:planted-otlp-password@127.0.0.1:{port}/?api_key=planted-query-key",
    )
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer planted-bearer-token,x-scope-orgid=planted-tenant",
    )
    monkeypatch.setenv(
        "APPSDK_OTLP_ENDPOINTS", f"http://127.0.0.1:{port}/v1/traces?token=planted-query-token"
    )
    monkeypatch.setenv("APPSDK_SPOOL_PATH", str(tmp_path / "spool.db"))
    monkeypatch.setenv("APPSDK_EXPORT_TIMEOUT_S", "1")
    return "127.0.0.1"


def _assert_clean(text: str, host: str = "127.0.0.1") -> None:
    leaked = [secret for secret in PLANTED if secret in text]
    assert not leaked, f"{leaked} printed in:\n{text}"
    assert host in text


def test_the_settings_repr_and_str_show_hosts_not_secrets(planted: str) -> None:
    settings = load_settings()
    _assert_clean(repr(settings))
    _assert_clean(str(settings))
    assert "x-scope-orgid" not in repr(settings)  # header names are shown nowhere either


def test_export_warnings_name_the_host_not_the_credentials(
    planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        pipeline = appsdk.configure()
        with pipeline.tracer.start_as_current_span("x"):
            pass
        appsdk.flush(10)
        appsdk.shutdown()
    warnings = [r for r in caplog.records if r.name == "appsdk" and r.levelno >= logging.WARNING]
    assert {r.getMessage().split(" ")[3] for r in warnings} >= {"langfuse", "otlp", "otlp-1"}
    everything = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    _assert_clean(everything)


def test_doctor_shows_hosts_not_credentials(planted: str) -> None:
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1  # nothing is reachable
    assert result.output.count("unreachable") == 3
    _assert_clean(result.output)


def test_spool_status_and_flush_show_hosts_not_credentials(planted: str) -> None:
    pipeline = appsdk.configure()
    with pipeline.tracer.start_as_current_span("x"):
        pass
    appsdk.shutdown()
    status = CliRunner().invoke(cli, ["spool", "status"])
    assert status.exit_code == 0, status.output
    assert "otlp http://***@127.0.0.1" in status.output and "api_key=***" in status.output
    _assert_clean(status.output)
    flush = CliRunner().invoke(cli, ["spool", "flush", "--timeout", "0.5"])
    assert flush.exit_code == 1 and "still waiting" in flush.output
    _assert_clean(flush.output + str(flush.stderr_bytes or b""), host="otlp")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LANGFUSE_BASE_URL", "ftp://lf:planted-lf-password@127.0.0.1/"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318?api_key=planted-query-key"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "me:planted-otlp-password@127.0.0.1:4318"),
        ("APPSDK_OTLP_ENDPOINTS", "grpc://127.0.0.1:4317?token=planted-query-token"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer planted-bearer-token"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "=planted-tenant"),
        ("LANGFUSE_SAMPLE_RATE", "lots"),
    ],
)
def test_configuration_errors_show_no_secret(
    planted: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        appsdk.configure()
    message = str(caught.value)
    assert not [secret for secret in PLANTED if secret in message], message
    assert variable.split("_")[0] in message
    doctor = CliRunner().invoke(cli, ["doctor"])
    assert doctor.exit_code == 1 and "FAIL  configuration" in doctor.output
    assert not [secret for secret in PLANTED if secret in doctor.output], doctor.output


def test_a_bad_url_error_still_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", "ftp://lf:planted-lf-password@langfuse.internal/")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "ftp://***@langfuse.internal/" in str(caught.value)


def test_settings_built_in_code_do_not_echo_a_bad_value() -> None:
    with pytest.raises(ValueError) as caught:
        Settings(spool_max_bytes="planted-query-key")  # type: ignore[arg-type]
    assert "planted-query-key" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://cloud.langfuse.com", "https://cloud.langfuse.com"),
        ("https://u:p@h.example/v1/traces", "https://***@h.example/v1/traces"),
        (
            "http://h:4318/v1/traces?api_key=s&region=eu",
            "http://h:4318/v1/traces?api_key=***&region=eu",
        ),
        (
            "http://h/?X-Amz-Signature=abc&X-Amz-Credential=def",
            "http://h/?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("http://h/?q=sk-lf-0123", "http://h/?q=***"),
        ("http://h/hooks/T01/abcdEFGH1234ijklMNOP5678", "http://h/hooks/T01/***"),
        ("http://h/x#access_token=abc", "http://h/x"),
        ("user:pw@collector:4318", "***@collector:4318"),
        ("http://h/\x1b]0;title\x07", "http://h/\\x1b]0;title\\x07"),
        ("http://[::1", "(a value that is not a URL; not shown)"),
    ],
)
def test_safe_url_keeps_where_and_drops_who(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_the_metric_exporter_never_logs_a_credential_in_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:

    from appsdk.metrics_export import _EXPORTER_LOGGERS, _SAFE_URLS

    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_SAFE_URLS)
        logging.getLogger(name).warning("retrying url: %s", "/v1/metrics?api_key=PLANTED0042")
    assert "PLANTED0042" not in caplog.text and "/v1/metrics" in caplog.text
