from __future__ import annotations

import pytest

from appsdk import ConfigError
from appsdk.config import load_settings


def test_argument_beats_appsdk_variable_beats_ecosystem_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "10")
    assert load_settings().max_queue_size == 10
    monkeypatch.setenv("APPSDK_MAX_QUEUE_SIZE", "20")
    assert load_settings().max_queue_size == 20
    assert load_settings(max_queue_size=30).max_queue_size == 30


def test_langfuse_base_url_wins_over_deprecated_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_HOST", "http://old.example:3000")
    assert load_settings().langfuse_url == "http://old.example:3000"
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://new.example:3000/")
    assert load_settings().langfuse_url == "http://new.example:3000"


def test_otlp_endpoints_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%3D,tenant=t1")
    monkeypatch.setenv("APPSDK_OTLP_ENDPOINTS", "http://jaeger:4318/v1/traces")
    assert load_settings().extra_otlp_endpoints() == [
        ("http://collector:4318/v1/traces", {"x-api-key": "abc=", "tenant": "t1"}),
        ("http://jaeger:4318/v1/traces", {}),
    ]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4318/custom")
    assert load_settings().extra_otlp_endpoints()[0][0] == "http://tempo:4318/custom"


def test_local_store_only_when_nothing_else_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().local_store_enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert not load_settings().local_store_enabled
    assert load_settings(local_store="always").local_store_enabled


@pytest.mark.parametrize(
    ("env", "variable", "fix_words"),
    [
        ({"LANGFUSE_PUBLIC_KEY": "pk-lf-test"}, "LANGFUSE_SECRET_KEY", "both"),
        ({"LANGFUSE_SECRET_KEY": "sk-lf-1"}, "LANGFUSE_PUBLIC_KEY", "both"),
        ({"LANGFUSE_BASE_URL": "cloud.langfuse.com"}, "LANGFUSE_BASE_URL", "full URL"),
        ({"LANGFUSE_SAMPLE_RATE": "1.5"}, "LANGFUSE_SAMPLE_RATE", "fraction"),
        ({"LANGFUSE_SAMPLE_RATE": "lots"}, "LANGFUSE_SAMPLE_RATE", "between 0 and 1"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
            "0.1",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP", "full URL"),
        ({"LANGFUSE_TRACING_ENVIRONMENT": "Prod"}, "LANGFUSE_TRACING_ENVIRONMENT", "[a-z0-9_-]"),
        ({"APPSDK_LOCAL_STORE": "maybe"}, "APPSDK_LOCAL_STORE", "auto"),
    ],
)
def test_bad_configuration_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str, fix_words: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in caught.value.field
    assert fix_words in caught.value.fix
    assert isinstance(caught.value, ValueError)


def test_secret_key_never_shows_in_errors_or_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-very-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "very-secret" not in str(caught.value)
    settings = load_settings(langfuse_public_key="pk-lf-test")
    assert "very-secret" not in repr(settings)


def test_unknown_option_in_code_is_rejected() -> None:
    with pytest.raises(ConfigError, match="langfuse_public_key"):
        load_settings(public_key="pk-lf-test")
