"""Request compression: an OTLP endpoint's as OpenTelemetry's variables say (none unless
asked), Langfuse's always gzip; the spool keeps the two apart."""

from __future__ import annotations

from pathlib import Path

import pytest

import appsdk
from appsdk import ConfigError
from appsdk.config import load_settings
from tests.servers import otlp_receiver


def _one_span(tmp_path: Path, *, delivered: bool = True, **options: object) -> None:
    appsdk.configure(local_store="never", spool_path=tmp_path / "spool.db", **options)  # type: ignore[arg-type]

    @appsdk.observe()
    def step(text: str) -> str:
        return text

    step("hello")
    assert appsdk.flush(10) is delivered  # False: it waits in the spool


def test_an_otlp_endpoint_gets_plain_protobuf_unless_asked(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        _one_span(tmp_path, otlp_traces_endpoint=receiver.traces_url)
        (request,) = receiver.requests
    assert "content-encoding" not in request.headers
    assert request.raw_body == request.body and [s.name for s in request.spans] == ["step"]


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"]
)
def test_gzip_when_the_variable_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "gzip")
    with otlp_receiver() as receiver:
        _one_span(tmp_path, otlp_traces_endpoint=receiver.traces_url)
        (request,) = receiver.requests
    assert request.headers["content-encoding"] == "gzip"
    assert request.raw_body[:2] == b"\x1f\x8b" and [s.name for s in request.spans] == ["step"]


def test_the_traces_variable_wins_over_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none")
    assert load_settings().otlp_compression == "none"


def test_an_unknown_compression_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "OTEL_EXPORTER_OTLP_COMPRESSION" in str(raised.value)
    assert "gzip or none" in str(raised.value)


def test_langfuse_always_gets_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    with otlp_receiver() as receiver:
        _one_span(
            tmp_path,
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-test",
            langfuse_base_url=receiver.url,
        )
        traces = [r for r in receiver.requests if r.path.endswith("/v1/traces")]
    assert traces and all(r.headers["content-encoding"] == "gzip" for r in traces)


def test_a_spooled_body_is_sent_as_it_was_stored_after_the_setting_changed(
    tmp_path: Path,
) -> None:
    with otlp_receiver(status=503) as receiver:
        _one_span(
            tmp_path,
            delivered=False,
            otlp_traces_endpoint=receiver.traces_url,
            otlp_compression="gzip",
        )
        assert appsdk.stats()["otlp"]["spooled"] == 1
        receiver.status = 200
        pipeline = appsdk.configure(
            local_store="never",
            spool_path=tmp_path / "spool.db",
            otlp_traces_endpoint=receiver.traces_url,
            otlp_compression="none",
        )
        assert pipeline.drain_spool(10)
        accepted = [r for r in receiver.requests if r.spans]
    (resent,) = accepted
    assert resent.headers["content-encoding"] == "gzip"
    assert [s.name for s in resent.spans] == ["step"]
