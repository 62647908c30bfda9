"""``appsdk spool`` after an outage: resend what was rejected, purge what is not wanted."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from typer.testing import CliRunner

from appsdk.cli import app as cli_app
from appsdk.otlp import OTLPHttpExporter
from appsdk.spool import Spool, exporter_key
from tests.servers import OTLPReceiver


def _body(exporter: OTLPHttpExporter) -> bytes:
    span = TracerProvider().get_tracer("test.spool").start_span("kept")
    span.end()
    return exporter.encode([span])  # type: ignore[list-item]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, ["spool", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def spooled(
    receiver: OTLPReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Spool, OTLPReceiver]:
    """A spool with one batch rejected for this configuration and one left by another."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.traces_url)
    monkeypatch.setenv("APPSDK_SPOOL_PATH", str(tmp_path / "spool.db"))
    exporter = OTLPHttpExporter(name="otlp", endpoint=receiver.traces_url)
    spool = Spool(tmp_path / "spool.db")
    mine = exporter_key("otlp", receiver.traces_url)
    theirs = exporter_key("otlp", receiver.traces_url, {"x-scope-orgid": "other-tenant"})
    spool.put(mine, _body(exporter), 1, rejected="HTTP 401 Unauthorized")
    spool.put(theirs, _body(exporter), 1)
    return spool, receiver


def test_rejected_batches_are_sent_again_once_the_keys_are_fixed(
    spooled: tuple[Spool, OTLPReceiver],
) -> None:
    spool, receiver = spooled
    assert "retried 1 batches" in _cli("retry-rejected")
    _cli("flush")
    assert len(receiver.spans) == 1
    # The other tenant's batch was neither sent nor touched.
    (left,) = spool.status()
    assert left.batches == 1 and not left.rejected


def test_purge_deletes_only_what_it_is_asked_to(spooled: tuple[Spool, OTLPReceiver]) -> None:
    spool, _ = spooled
    assert "deleted 1 batches" in _cli("purge", "--other-destinations")
    (mine,) = spool.status()
    assert mine.rejected and mine.batches == 0
    assert "deleted 1 batches" in _cli("purge", "--rejected")
    assert spool.status() == []


def test_flush_with_nothing_configured_says_so(tmp_path: Path) -> None:
    output = _cli("flush")
    assert "Nothing is configured to send to" in output
