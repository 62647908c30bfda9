"""Malformed URLs, headers and timeouts are a ConfigError naming the variable and the fix, at
``load_settings``/``configure()`` time: never a raw ValueError or OverflowError later, never
a retry loop against a request that can never be sent, and never an echoed secret."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import appsdk
from appsdk import ConfigError
from appsdk.config import load_settings, parse_headers
from appsdk.preflight import preflight

SECRET = "planted-secret-42"


def _rejects(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ConfigError:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return caught.value


@pytest.mark.parametrize(
    ("variable", "url", "problem", "fix"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1", "[IPv6] host", "http://[::1]:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1:4318/", "[IPv6] host", "brackets"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[collector]:4318", "[IPv6] host", "brackets"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:99999/v1", "port 99999", "4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:0/v1", "port 0", "4318"),
        ("LANGFUSE_BASE_URL", "http://127.0.0.1:lf", "a port", "4318"),
        ("LANGFUSE_HOST", "https://cloud.langfuse.com:-1", "not a number from 1", "port"),
        ("APPSDK_OTLP_ENDPOINTS", "http://:4318/v1/traces", "with a host", "full URL"),
        ("APPSDK_OTLP_ENDPOINTS", "grpc://127.0.0.1:4317", "http(s) URL", "full URL"),
        ("LANGFUSE_BASE_URL", "file:///etc/passwd", "http(s) URL", "full URL"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector\r\n:4318", "line break", "remove"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://coll ector:4318", "space", "remove"),
        ("LANGFUSE_BASE_URL", "http://xn--a.example", "host name", "full URL"),
        ("LANGFUSE_BASE_URL", "http://1.2.3.999", "host name", "full URL"),
    ],
)
def test_a_malformed_url_names_its_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, problem: str, fix: str
) -> None:
    error = _rejects({variable: url}, monkeypatch)
    assert variable in error.field
    assert problem in error.problem and fix in error.fix


def test_the_entry_of_a_list_of_endpoints_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _rejects(
        {"APPSDK_OTLP_ENDPOINTS": "http://ok.example:4318/v1/traces,http://[::1"}, monkeypatch
    )
    assert error.field.endswith("APPSDK_OTLP_ENDPOINTS (entry 2)")


def test_a_url_that_does_not_parse_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in (
        f"http://user:{SECRET}@[::1/v1",
        f"http://user:{SECRET}@127.0.0.1:99999/",
        f"http://127.0.0.1:{SECRET}/",
        f"http://127.0.0.1:4318/?token={SECRET}\n",
    ):
        error = _rejects({"OTEL_EXPORTER_OTLP_ENDPOINT": url}, monkeypatch)
        assert SECRET not in str(error), url


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ("authorization=Bearer%20abc%0D%0Ax-injected%3A%201", "line break"),
        ("authorization=Bearer abc\r\nx-injected: 1", "line break"),
        ("x-tenant=acme%00", "control character"),
        ("x-tenant=caf%C3%A9", "non-ASCII"),
        ("x-bad%0Aname=1", "not a valid HTTP header name"),
        ("x bad=1", "not a valid HTTP header name"),
        ("x:bad=1", "not a valid HTTP header name"),
        ("=value", "no name"),
        ("x-api-key", "no name"),
    ],
)
@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
)
def test_a_malformed_header_names_its_variable_not_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, headers: str, problem: str
) -> None:
    error = _rejects({variable: f"{headers},x-secret={SECRET}"}, monkeypatch)
    assert variable in error.field and problem in error.problem
    assert SECRET not in str(error) and "Bearer" not in str(error)


def test_headers_are_checked_even_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _rejects({"OTEL_EXPORTER_OTLP_HEADERS": "a=b%0Ac"}, monkeypatch)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in error.field


def test_valid_headers_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20YWJj%3D%3D, x-scope-orgid=t1"
    )
    assert load_settings().extra_otlp_endpoints() == [
        ("http://[::1]:4318/v1/traces", {"authorization": "Basic YWJj==", "x-scope-orgid": "t1"})
    ]


@pytest.mark.parametrize(
    "variable",
    ["APPSDK_EXPORT_TIMEOUT_S", "APPSDK_SHUTDOWN_TIMEOUT_S"],
)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("inf", "finite"),
        ("-inf", "finite"),
        ("nan", "finite"),
        ("Infinity", "finite"),
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        ("86401", "less than or equal to 86400"),
        ("1e308", "less than or equal to 86400"),
        ("soon", "valid number"),
    ],
)
def test_a_timeout_that_is_not_a_sane_number_of_seconds_is_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    error = _rejects({variable: value}, monkeypatch)
    assert variable in error.field and problem in error.problem
    assert "86400" in error.fix


def test_a_schedule_delay_beyond_a_day_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _rejects({"OTEL_BSP_SCHEDULE_DELAY": "9" * 30}, monkeypatch)
    assert "OTEL_BSP_SCHEDULE_DELAY" in error.field and "86400000" in error.fix


def test_timeouts_given_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="export_timeout_s"):
        load_settings(export_timeout_s=float("inf"))
    with pytest.raises(ConfigError, match="shutdown_timeout_s"):
        load_settings(shutdown_timeout_s=float("nan"))
    assert load_settings(export_timeout_s=86400, shutdown_timeout_s=0.5).export_timeout_s == 86400


def test_configure_raises_the_config_error_before_installing_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPSDK_SHUTDOWN_TIMEOUT_S", "inf")
    with pytest.raises(ConfigError, match="APPSDK_SHUTDOWN_TIMEOUT_S"):
        appsdk.configure()
    monkeypatch.delenv("APPSDK_SHUTDOWN_TIMEOUT_S")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        appsdk.configure(otlp_endpoint="http://[::1")


_URL_ALPHABET = st.sampled_from(
    [*"htps:/[]@?#%&=.:-_+\\ 0123456789abcxyz", "\r", "\n", "\t", "\x00", "é", "٨", "::1", "//"]
)
_URLS = st.one_of(
    st.text(),
    st.lists(_URL_ALPHABET, max_size=30).map("".join),
    st.builds(
        lambda scheme, host, port, rest: f"{scheme}://{host}{port}{rest}",
        st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
        st.sampled_from(["127.0.0.1", "[::1]", "[::1", "::1]", "", "host", "ho st", "user:pw@h"]),
        st.one_of(st.just(""), st.text(max_size=8).map(lambda p: f":{p}")),
        st.text(max_size=10),
    ),
)


@settings(max_examples=300, deadline=None)
@given(url=_URLS, field=st.sampled_from(["langfuse_base_url", "otlp_endpoint", "otlp_endpoints"]))
def test_any_url_is_accepted_or_a_config_error(url: str, field: str) -> None:
    value: object = (url,) if field == "otlp_endpoints" else url
    try:
        settings_ = load_settings(**{field: value})
    except ConfigError:
        return
    # What was accepted can be used: the endpoints are built without a raw ValueError.
    settings_.extra_otlp_endpoints()
    _ = settings_.langfuse_url


@settings(max_examples=300, deadline=None)
@given(raw=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_any_header_string_is_parsed_or_a_config_error_without_its_values(raw: str) -> None:
    try:
        headers = parse_headers(raw)
    except ConfigError as error:
        for item in raw.split(","):
            _, sep, value = item.partition("=")
            if sep and len(value.strip()) >= 6:
                assert value.strip() not in str(error)
        return
    for name, value in headers.items():
        assert name and name == name.lower()
        assert "\r" not in value and "\n" not in value and value.isascii()


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.floats(), st.integers(min_value=-(10**30), max_value=10**30)))
def test_any_timeout_is_accepted_within_a_day_or_a_config_error(value: float) -> None:
    try:
        timeout = load_settings(shutdown_timeout_s=value).shutdown_timeout_s
    except ConfigError as error:
        assert "shutdown_timeout_s" in error.field
        return
    assert 0 < timeout <= 86400


# -- what the settings name: files, folders, keys (appsdk.preflight.preflight) ---------------------

_STORE_FIX = (
    "point it at a file in a folder this process can write, "
    "or set APPSDK_LOCAL_STORE=never to keep no local traces"
)
_SPOOL_FIX = (
    "point it at a file in a folder this process can write, "
    "or set APPSDK_SPOOL=false to drop what a backend cannot take"
)
_KEY_FIX = (
    "use random keys of at least 16 characters, comma-separated, newest last "
    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
)
_PROMPTS_FIX = (
    "point it at the folder of your prompt files (<name>.json), or unset it to read ./prompts"
)


def _configure_rejects(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = appsdk.runtime.current()
    with pytest.raises(ConfigError) as caught:
        appsdk.configure()
    assert appsdk.runtime.current() is before  # nothing was installed
    return str(caught.value)


def test_a_store_folder_that_cannot_be_created_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where the folder should be")
    message = _configure_rejects(monkeypatch, APPSDK_STORE_PATH=str(tmp_path / "blocker/t.db"))
    assert message == (
        f"APPSDK_STORE_PATH / store_path: cannot create the folder {tmp_path}/blocker: "
        f"a file of that name is in the way. Fix: {_STORE_FIX}"
    )
    message = _configure_rejects(monkeypatch, APPSDK_STORE_PATH=str(tmp_path / "blocker/a/t.db"))
    assert message == (
        f"APPSDK_STORE_PATH / store_path: cannot create the folder {tmp_path}/blocker/a "
        f"(Not a directory). Fix: {_STORE_FIX}"
    )


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root writes in any folder"
)
def test_a_store_folder_that_cannot_be_written_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    message = _configure_rejects(monkeypatch, APPSDK_STORE_PATH=str(locked / "traces.db"))
    assert message == (
        f"APPSDK_STORE_PATH / store_path: cannot write in the folder {locked} "
        f"(Permission denied). Fix: {_STORE_FIX}"
    )


def test_a_store_path_that_is_a_folder_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = _configure_rejects(monkeypatch, APPSDK_STORE_PATH=str(tmp_path))
    assert message == (
        f"APPSDK_STORE_PATH / store_path: {tmp_path} is a folder, not a file. "
        f"Fix: give the path of a file, e.g. {tmp_path}/traces.db"
    )


def test_the_store_folder_is_made_private_and_left_empty(tmp_path: Path) -> None:
    store = tmp_path / "new" / "deeper" / "traces.db"
    appsdk.configure(store_path=store)
    # The folder as appsdk.sqlite makes it; the database itself is created (0600) on first use.
    assert list(store.parent.iterdir()) == []
    if sys.platform != "win32":
        assert store.parent.stat().st_mode & 0o777 == 0o700


def test_a_spool_folder_that_cannot_be_created_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("")
    message = _configure_rejects(
        monkeypatch,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        APPSDK_SPOOL_PATH=str(tmp_path / "blocker/spool.db"),
    )
    assert message == (
        f"APPSDK_SPOOL_PATH / spool_path: cannot create the folder {tmp_path}/blocker: "
        f"a file of that name is in the way. Fix: {_SPOOL_FIX}"
    )


def test_a_feedback_outbox_folder_that_cannot_be_created_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    settings_ = load_settings(
        langfuse_public_key="pk-lf-test",
        langfuse_secret_key="sk-lf-test",
        spool=False,
        feedback_outbox=tmp_path / "blocker" / "feedback.db",
    )
    (problem,) = preflight(settings_).problems.values()
    assert str(problem) == (
        f"APPSDK_FEEDBACK_OUTBOX / feedback_outbox: cannot create the folder {tmp_path}/blocker: "
        "a file of that name is in the way. "
        "Fix: point it at a file in a folder this process can write"
    )


def test_only_the_folders_in_use_are_checked(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    blocked = tmp_path / "blocker" / "x.db"
    langfuse = {"langfuse_public_key": "pk-lf-test", "langfuse_secret_key": "sk-lf-test"}
    unused = [
        # The local store, with a backend configured (auto) or turned off.
        {"store_path": blocked, "otlp_endpoint": "http://127.0.0.1:9", "spool": False},
        {"store_path": blocked, "local_store": "never"},
        # The spool, turned off or with no backend to spool for.
        {"spool_path": blocked, "otlp_endpoint": "http://127.0.0.1:9", "spool": False},
        {"spool_path": blocked, "local_store": "never"},
        # The outbox without Langfuse; the prompts folder with Langfuse (prompts come from it).
        {"feedback_outbox": blocked, "local_store": "never"},
        {"prompts_dir": tmp_path / "missing", **langfuse, "spool": False},
        # Nothing is exported or stored when tracing is off.
        {"store_path": blocked, "tracing_enabled": False},
    ]
    for options in unused:
        assert preflight(load_settings(**options)).problems == {}, options


def test_a_missing_price_table_is_rejected_at_configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = _configure_rejects(monkeypatch, APPSDK_PRICES=str(tmp_path / "prices.json"))
    assert message == (
        f"APPSDK_PRICES: cannot read {tmp_path}/prices.json: No such file or directory. "
        "Fix: point it at a JSON or TOML price table"
    )


def test_a_price_table_that_does_not_parse_is_rejected_at_configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "prices.json").write_text("{not json")
    message = _configure_rejects(monkeypatch, APPSDK_PRICES=str(tmp_path / "prices.json"))
    assert message == (
        f"APPSDK_PRICES: {tmp_path}/prices.json is not a valid price table: Expecting property "
        "name enclosed in double quotes: line 1 column 2 (char 1). "
        "Fix: see docs/prompts-and-cost.md for the format"
    )


def test_the_price_table_is_loaded_once_at_configure(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text('{"prices": [{"model": "m", "input": "1", "output": "2"}]}')
    appsdk.configure(prices=prices)
    prices.unlink()  # the clients read the table configure() loaded, not the file
    table = appsdk.PriceTable.in_force()
    assert table is not None and table.price_for("m") is not None


def test_a_missing_prompts_folder_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    message = _configure_rejects(monkeypatch, APPSDK_PROMPTS_DIR="my-prompts")
    assert message == (
        f"APPSDK_PROMPTS_DIR / prompts_dir: {tmp_path}/my-prompts does not exist. "
        f"Fix: {_PROMPTS_FIX}"
    )
    (tmp_path / "a-file").write_text("")
    message = _configure_rejects(monkeypatch, APPSDK_PROMPTS_DIR="a-file")
    assert message == (
        f"APPSDK_PROMPTS_DIR / prompts_dir: {tmp_path}/a-file is not a folder. Fix: {_PROMPTS_FIX}"
    )
    # The default folder need not exist: get_prompt says so when it is asked for a prompt.
    (tmp_path / "my-prompts").mkdir()
    monkeypatch.setenv("APPSDK_PROMPTS_DIR", "my-prompts")
    appsdk.configure()


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("short-secret", "key 1 of 1 is shorter than 16 characters (keys are never shown)"),
        (
            f"{'n' * 32}, old-key-1,{'m' * 16},old2",
            "keys 2, 4 of 4 are shorter than 16 characters (keys are never shown)",
        ),
        (" , ,", "holds no key, only commas"),
    ],
)
def test_a_feedback_secret_too_short_to_use_is_rejected(
    monkeypatch: pytest.MonkeyPatch, secret: str, problem: str
) -> None:
    message = _configure_rejects(monkeypatch, APPSDK_FEEDBACK_SECRET=secret)
    assert message == f"APPSDK_FEEDBACK_SECRET / feedback_secret: {problem}. Fix: {_KEY_FIX}"
    assert "old-key" not in message and "short-secret" not in message


def test_the_token_code_and_configure_agree_on_the_shortest_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appsdk.feedback.tokens import check_secret

    check_secret("k" * 16)
    appsdk.configure(feedback_secret="k" * 16)
    with pytest.raises(ConfigError):
        check_secret("k" * 15)
    _configure_rejects(monkeypatch, APPSDK_FEEDBACK_SECRET="k" * 15)
