"""One place for each decision: every variable is a setting, read where it applies from the
settings in force (argument > variable > default); the exporters and the price table are
computed once per configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import appsdk
from appsdk import CaptureMode, ConfigError, Policy, PriceTable
from appsdk.batching import BatchExportProcessor, SpoolableExporter
from appsdk.config import load_settings, parse_headers, settings_in_force
from appsdk.doctor import run_checks
from appsdk.feedback import FeedbackClient, issue_feedback_token, verify_feedback_token
from appsdk.otlp import OTLPHttpExporter
from appsdk.prompts import get_prompt
from appsdk.spool import Spool
from appsdk.store.exporter import LocalStoreExporter
from appsdk.testing import capture_spans

SECRET = "planted-secret-42"
TRACE = "ab" * 16
PRICES = (
    '{"currency": "EUR", "prices": [{"model": "m", "input": "1", "output": "2", "unit": "1K"}]}'
)


def _prompts(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    version = {"version": 1, "prompt": text, "labels": ["production"]}
    (folder / "qa.json").write_text(json.dumps({"name": "qa", "versions": [version]}))
    return folder


# -- the policy ------------------------------------------------------------------------------


def test_the_capture_variable_reaches_the_configured_policy_and_an_argument_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPSDK_CAPTURE", "inputs=none,completions=metadata")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT")
    pipeline = appsdk.configure(local_store="never")
    assert pipeline.policy.inputs is CaptureMode.NONE
    assert pipeline.policy.completions is CaptureMode.METADATA  # APPSDK_CAPTURE names it
    assert pipeline.policy.messages is CaptureMode.NONE  # the OTel switch
    assert Policy.from_env().inputs is CaptureMode.NONE  # the settings in force

    pipeline = appsdk.configure(local_store="never", capture="full")
    assert pipeline.policy.inputs is CaptureMode.FULL
    assert Policy.from_env().inputs is CaptureMode.FULL  # the configured one, not the variable


@pytest.mark.parametrize(
    ("value", "problem"),
    [("everything", "unknown capture mode 'everything'"), ("prompts=full", "'prompts'")],
)
def test_a_bad_capture_value_fails_configure_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("APPSDK_CAPTURE", value)
    for attempt in (appsdk.configure, load_settings, Policy.from_env):
        with pytest.raises(ConfigError) as caught:
            attempt()
        assert "APPSDK_CAPTURE" in caught.value.field and problem in caught.value.problem
        assert "none, metadata, redacted or full" in caught.value.fix or "kinds" in caught.value.fix
    (check,) = run_checks()
    assert not check.ok and "APPSDK_CAPTURE" in check.detail


def test_the_pseudonym_key_is_a_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSDK_PSEUDONYM_KEY", SECRET)
    first, second = Policy.from_env(), Policy.from_env()
    assert first.keyed_hash("bob") == second.keyed_hash("bob")  # the key, not a random one
    assert first.keyed_hash("bob") == Policy(pseudonym_key=SECRET).keyed_hash("bob")
    assert SECRET not in repr(load_settings()) and SECRET not in str(load_settings())


def test_a_setting_read_alone_is_not_failed_by_another_bad_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFUSE_SAMPLE_RATE", "lots")
    monkeypatch.setenv("APPSDK_CAPTURE", "full")
    assert Policy.from_env().inputs is CaptureMode.FULL
    with pytest.raises(ConfigError, match="LANGFUSE_SAMPLE_RATE"):
        appsdk.configure()  # which names it


# -- @observe's switch -----------------------------------------------------------------------


def test_the_io_capture_switch_reaches_observe_from_the_variable_or_the_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def traced() -> dict[str, object]:
        @appsdk.observe()
        def echo(text: str) -> str:
            return text

        echo("hello")
        (observation,) = capture.observations()
        return {"input": observation.input, "output": observation.output}

    with capture_spans(observe_io_capture=False) as capture:
        assert traced() == {"input": None, "output": None}
    with capture_spans() as capture:
        monkeypatch.setenv("LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED", " False ")
        assert traced() == {"input": None, "output": None}  # read when decorating, as langfuse
    monkeypatch.delenv("LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED")
    with capture_spans() as capture:
        assert traced()["output"] == "hello"


def test_a_bad_io_capture_switch_is_named_by_configure_and_never_breaks_decorating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED", "sometimes")
    with pytest.raises(ConfigError) as caught:
        appsdk.configure()
    assert "LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED" in caught.value.field
    assert "true or false" in caught.value.fix

    @appsdk.observe()
    def still_works(text: str) -> str:
        return text

    assert still_works("ok") == "ok"
    # An argument to configure() wins over the bad variable, for the decorator too.
    with capture_spans(observe_io_capture=False) as capture:

        @appsdk.observe()
        def quiet(text: str) -> str:
            return text

        quiet("hello")
    (observation,) = capture.observations()
    assert observation.input is None and observation.output is None


# -- prompts, prices, feedback ---------------------------------------------------------------


def test_the_prompts_folder_comes_from_the_variable_or_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPSDK_PROMPTS_DIR", str(_prompts(tmp_path / "env", "from env")))
    assert get_prompt("qa").prompt == "from env"
    appsdk.configure(local_store="never", prompts_dir=_prompts(tmp_path / "arg", "from arg"))
    assert get_prompt("qa").prompt == "from arg"
    assert get_prompt("qa", folder=tmp_path / "env").prompt == "from env"  # the argument wins


def test_an_empty_variable_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _prompts(tmp_path / "prompts", "default folder")  # the working directory is tmp_path
    for variable in ("APPSDK_PROMPTS_DIR", "APPSDK_PRICES", "APPSDK_CAPTURE"):
        monkeypatch.setenv(variable, "")
    assert get_prompt("qa").prompt == "default folder"
    assert PriceTable.in_force() is None
    assert Policy.from_env().inputs is CaptureMode.REDACTED


def test_the_price_table_is_loaded_once_per_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(PRICES)
    loads: list[object] = []
    original = PriceTable.from_file.__func__  # type: ignore[attr-defined]

    def counted(cls: type[PriceTable], file: str | Path) -> PriceTable:
        loads.append(file)
        return original(cls, file)  # type: ignore[no-any-return]

    monkeypatch.setattr(PriceTable, "from_file", classmethod(counted))
    monkeypatch.setenv("APPSDK_PRICES", str(path))
    table = PriceTable.in_force()
    assert table is not None and table.currency == "EUR"
    for _ in range(3):
        appsdk.LLMDClient(base_url="http://127.0.0.1:9").close()
    assert PriceTable.in_force() is table and PriceTable.from_env() is table
    assert len(loads) == 1

    appsdk.configure(local_store="never", prices=path)  # a new configuration: loaded again
    configured = PriceTable.in_force()
    appsdk.LLMDClient(base_url="http://127.0.0.1:9").close()
    assert configured is not table and PriceTable.in_force() is configured
    assert len(loads) == 2


def test_a_bad_price_file_is_named_when_a_client_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPSDK_PRICES", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="APPSDK_PRICES"):
        appsdk.LLMDClient(base_url="http://127.0.0.1:9")


def test_the_feedback_secret_comes_from_the_configuration_or_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    appsdk.configure(local_store="never", feedback_secret="c" * 32)
    token = issue_feedback_token(TRACE)
    assert verify_feedback_token(token, secret="c" * 32).trace_id == TRACE
    appsdk.shutdown()
    monkeypatch.setenv("APPSDK_FEEDBACK_SECRET", f"{'o' * 20}, {'n' * 20}")  # rotated: n signs
    assert verify_feedback_token(issue_feedback_token(TRACE), secret="n" * 20).trace_id == TRACE
    monkeypatch.setenv("APPSDK_FEEDBACK_SECRET", "short")
    with pytest.raises(ConfigError, match="APPSDK_FEEDBACK_SECRET"):
        issue_feedback_token(TRACE)
    assert "short" not in repr(load_settings())


def test_the_feedback_outbox_comes_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"langfuse_public_key": "pk-lf-1", "langfuse_secret_key": "sk-lf-1"}
    monkeypatch.setenv("APPSDK_FEEDBACK_OUTBOX", str(tmp_path / "env.db"))
    client = FeedbackClient(settings=load_settings(**keys), start=False)
    assert client.outbox is not None and client.outbox.path == tmp_path / "env.db"
    client.close(0)
    configured = load_settings(**keys, feedback_outbox=tmp_path / "arg.db")
    client = FeedbackClient(settings=configured, start=False)
    assert client.outbox is not None and client.outbox.path == tmp_path / "arg.db"
    client.close(0)


def test_unconfigured_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSDK_PROMPTS_DIR", "one")
    first = settings_in_force("prompts_dir")
    assert settings_in_force("prompts_dir") is first  # made once for this environment
    monkeypatch.setenv("APPSDK_PROMPTS_DIR", "two")
    assert settings_in_force("prompts_dir").prompts_dir == Path("two")


# -- the exporters ---------------------------------------------------------------------------


def test_the_exporters_are_described_once_and_every_reader_uses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-scope-orgid={SECRET}")
    options = {
        "langfuse_public_key": "pk-lf-1",
        "langfuse_secret_key": SECRET,
        "otlp_endpoints": ("http://127.0.0.1:9/extra",),
        "spool_path": tmp_path / "spool.db",
        "metrics": True,
    }
    configured = load_settings(**options)
    specs = configured.exporters
    assert specs is configured.exporters and specs is load_settings(**options).exporters
    assert [(s.name, s.kind, s.spans, s.spooled, s.metrics) for s in specs] == [
        ("langfuse", "langfuse", "langfuse", True, False),
        ("otlp", "otlp", "all", True, True),
        ("otlp-1", "otlp", "all", True, False),
    ]
    assert [s.url for s in specs] == [
        "https://cloud.langfuse.com/api/public/otel/v1/traces",
        "http://127.0.0.1:9/v1/traces",
        "http://127.0.0.1:9/extra",
    ]
    assert dict(specs[1].headers) == {"x-scope-orgid": SECRET} and not specs[2].headers
    assert configured.destinations() == [s.destination for s in specs]
    assert not configured.local_store_enabled
    assert all(SECRET not in repr(spec) for spec in specs)
    with_key = load_settings(otlp_traces_endpoint=f"https://u:{SECRET}@collector/v1/traces")
    assert SECRET not in repr(with_key.exporters) and "collector" in repr(with_key.exporters)

    pipeline = appsdk.configure(**options)
    assert [processor.name for processor, _ in pipeline.processors] == [s.name for s in specs]
    assert [p.spool_key for p, _ in pipeline.processors] == configured.destinations()  # type: ignore[attr-defined]

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    local = load_settings(spool=False)
    assert [(s.name, s.url, s.spooled, s.destination) for s in local.exporters] == [
        ("local", None, False, None)
    ]
    assert local.local_store_enabled and local.destinations() == []


def test_without_a_spooled_exporter_no_spool_is_opened(tmp_path: Path) -> None:
    pipeline = appsdk.configure(
        otlp_traces_endpoint="http://127.0.0.1:9/v1/traces",
        spool=False,
        spool_path=tmp_path / "spool.db",
    )
    assert pipeline.spool is None and not (tmp_path / "spool.db").exists()
    assert "spool_pending" not in appsdk.stats()["otlp"]


def test_only_a_spoolable_exporter_is_spooled(tmp_path: Path) -> None:
    otlp = OTLPHttpExporter(name="otlp", endpoint="http://127.0.0.1:9/v1/traces")
    local = LocalStoreExporter(tmp_path / "traces.db")
    assert isinstance(otlp, SpoolableExporter) and not isinstance(local, SpoolableExporter)
    spool = Spool(tmp_path / "spool.db")
    plain = BatchExportProcessor(local, name="local", spool=spool)
    assert "spool_pending" not in plain.snapshot()  # a plain exporter is never spooled
    spooled = BatchExportProcessor(otlp, name="otlp", spool=spool)
    assert spooled.snapshot()["spool_pending"] == 0
    plain.shutdown(1.0)
    spooled.shutdown(1.0)
    spool.close()


# -- headers: OpenTelemetry's syntax, appsdk's checks ----------------------------------------


@pytest.mark.parametrize("character", ['"', ";", "\\", "\t"])
def test_a_character_otel_takes_only_encoded_is_named_not_dropped(
    monkeypatch: pytest.MonkeyPatch, character: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-tenant=acme{character}{SECRET}")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    error = caught.value
    assert "OTEL_EXPORTER_OTLP_HEADERS" in error.field and "'x-tenant'" in error.problem
    assert "URL-encode" in error.fix and SECRET not in str(error)
    encoded = {'"': "%22", ";": "%3B", "\\": "%5C", "\t": "%09"}[character]
    assert parse_headers(f"x-tenant=acme{encoded}x") == {"x-tenant": f"acme{character}x"}


def test_headers_are_parsed_as_opentelemetry_parses_them() -> None:
    assert parse_headers(" Authorization=Basic%20YWJj%3D%3D , x-Scope-OrgID = t1,,") == {
        "authorization": "Basic YWJj==",
        "x-scope-orgid": "t1",
    }
    # Not URL-encoded but with a space: OTel's liberal form, taken as written.
    assert parse_headers("authorization=Bearer abc=") == {"authorization": "Bearer abc="}


@settings(max_examples=300, deadline=None)
@given(raw=st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_accepted_headers_reach_opentelemetry_whole_and_nothing_is_logged(raw: str) -> None:
    logger = logging.getLogger("opentelemetry.util.re")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        headers = parse_headers(raw)
    except ConfigError:
        return
    finally:
        logger.removeHandler(handler)
    assert records == []  # OTel's parser drops (and logs, value and all) what it cannot read
    assert bool(headers) == any(item.strip() for item in raw.split(","))  # none dropped
