from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import appsdk
from appsdk.testing import SpanCapture, capture_spans
from tests.servers import CONFIGURATION_PREFIXES, OTLPReceiver, otlp_receiver, reserved_port


@pytest.fixture(scope="session", autouse=True)
def no_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every HTTP client (httpx, openai, langfuse: some 600 in the suite, and those of the
    subprocesses) builds a TLS context, and parsing a CA bundle for it costs ~30 ms. Nothing
    here talks TLS to a real server: the trust store is an empty directory, read lazily, free.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SSL_CERT_FILE", raising=False)
        patch.setenv("SSL_CERT_DIR", str(tmp_path_factory.mktemp("no-ca")))
        yield


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's configuration, and none leaves a pipeline behind."""
    for name in list(os.environ):
        if name.startswith(CONFIGURATION_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # A global MeterProvider would outlive the test's collector; the metrics tests run in
    # their own processes with the default (on).
    monkeypatch.setenv("APPSDK_METRICS", "false")
    yield
    appsdk.shutdown(timeout_s=2.0)
    _forget_langfuse_clients()


def _forget_langfuse_clients() -> None:
    """langfuse keeps one client per public key for the process; tests point at new stubs."""
    from langfuse._client.resource_manager import LangfuseResourceManager

    for manager in list(LangfuseResourceManager._instances.values()):
        manager.shutdown()
    LangfuseResourceManager._instances.clear()


@pytest.fixture
def reserved() -> Iterator[socket.socket]:
    """A loopback port that refuses connections until ``otlp_receiver(reserved=...)`` takes it."""
    with reserved_port() as sock:
        yield sock


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with otlp_receiver() as r:
        yield r


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "traces.db"


@pytest.fixture
def captured() -> Iterator[SpanCapture]:
    """appsdk configured with nothing but an in-memory capture of the guarded spans."""
    with capture_spans() as capture:
        yield capture
