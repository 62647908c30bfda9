"""``appsdk doctor``: each check says what is wrong and what to fix, and never a secret."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from appsdk.cli import app as cli
from tests.langfuse_stub import langfuse_stub
from tests.servers import otlp_receiver


def _doctor(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["doctor"])
    return result.exit_code, result.output


def test_doctor_accepts_good_keys_and_a_reachable_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with langfuse_stub() as stub, otlp_receiver() as receiver:
        code, out = _doctor(
            monkeypatch,
            LANGFUSE_PUBLIC_KEY="pk-lf-test",
            LANGFUSE_SECRET_KEY="sk-lf-test-secret",
            LANGFUSE_BASE_URL=stub.url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        )
    assert code == 0, out
    assert "ok  langfuse" in out and f"ok  otlp {receiver.url}/v1/traces" in out


def test_doctor_names_the_variables_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with langfuse_stub() as stub:
        code, out = _doctor(
            monkeypatch,
            LANGFUSE_PUBLIC_KEY="pk-lf-test",
            LANGFUSE_SECRET_KEY="sk-lf-wrong-and-secret",
            LANGFUSE_BASE_URL=stub.url,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces",
        )
    assert code == 1
    assert "rejected the keys" in out and "LANGFUSE_SECRET_KEY" in out
    assert "unreachable" in out and "OTEL_EXPORTER_OTLP_ENDPOINT" in out
    assert "wrong-and-secret" not in out


def test_doctor_reports_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _doctor(monkeypatch, LANGFUSE_SAMPLE_RATE="3")
    assert code == 1 and "LANGFUSE_SAMPLE_RATE" in out and "between 0 and 1" in out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://me:planted-secret@[::1"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:99999/v1/traces"),
        ("LANGFUSE_BASE_URL", "http://127.0.0.1:port"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=planted-secret%0D%0Ax-evil%3A%201"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-ten\nant=planted-secret"),
        ("APPSDK_EXPORT_TIMEOUT_S", "inf"),
        ("APPSDK_SHUTDOWN_TIMEOUT_S", "inf"),
        ("APPSDK_SHUTDOWN_TIMEOUT_S", "-2"),
    ],
)
def test_doctor_prints_a_bad_configuration_as_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL  configuration: "), result.output
    assert variable in lines[0] and "Fix: " in lines[0]
    assert "planted-secret" not in result.output and "Traceback" not in result.output


def test_doctor_says_when_https_meets_a_plain_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_receiver() as receiver:
        tls_url = receiver.url.replace("http://", "https://")
        code, out = _doctor(monkeypatch, OTEL_EXPORTER_OTLP_ENDPOINT=tls_url)
    assert code == 1
    assert "TLS handshake failed" in out and "write http://, not https://" in out
