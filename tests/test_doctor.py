"""``appsdk doctor``: each check says what is wrong and what to fix, and never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import appsdk
from appsdk import ConfigError
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


def test_doctor_reports_each_problem_configure_would_raise_with_its_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Files, folders and keys the settings name: one FAIL line each, worded as configure()
    raises it (the checks are one function, appsdk.preflight.preflight)."""
    (tmp_path / "blocker").write_text("")
    bad = {  # in the order they are checked
        "APPSDK_PRICES": str(tmp_path / "prices.json"),
        "APPSDK_PROMPTS_DIR": str(tmp_path / "no-prompts"),
        "APPSDK_FEEDBACK_SECRET": "planted-short",
        "APPSDK_STORE_PATH": str(tmp_path / "blocker" / "traces.db"),
        "APPSDK_SAMPLING": str(tmp_path / "sampling.json"),
    }
    raised = {}
    for variable, value in bad.items():
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            with pytest.raises(ConfigError) as caught:
                appsdk.configure()
        raised[variable] = str(caught.value)
    code, out = _doctor(monkeypatch, **bad)
    assert code == 1
    assert out.splitlines() == [f"FAIL  configuration: {raised[v]}" for v in bad], out
    assert "planted-short" not in out


def test_doctor_fails_an_unusable_spool_beside_a_reachable_collector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("")
    with otlp_receiver() as receiver:
        code, out = _doctor(
            monkeypatch,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            APPSDK_SPOOL_PATH=str(tmp_path / "blocker" / "spool.db"),
        )
    assert code == 1
    assert out.splitlines() == [
        f"FAIL  configuration: APPSDK_SPOOL_PATH / spool_path: cannot create the folder "
        f"{tmp_path}/blocker: a file of that name is in the way. Fix: point it at a file in a "
        "folder this process can write, or set APPSDK_SPOOL=false to drop what a backend "
        "cannot take",
        f"ok  otlp {receiver.url}/v1/traces: accepts OTLP/HTTP",
    ]


def test_doctor_says_ok_for_a_usable_local_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"prices": []}')
    code, out = _doctor(monkeypatch, APPSDK_PRICES=str(prices), APPSDK_FEEDBACK_SECRET="k" * 16)
    assert code == 0, out
    assert out.splitlines() == [
        "ok  configuration: settings are valid",
        "ok  local store: traces go to .appsdk/traces.db",
    ]
