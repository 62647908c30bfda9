"""Stops that are not clean: SIGTERM and multiprocessing children lose no span."""

from __future__ import annotations

import gzip
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import appsdk
from tests.servers import OTLPReceiver, clean_env, decode

ROOT = Path(__file__).resolve().parent.parent

_SIGTERM_CHILD = """
import signal, sys, threading
import appsdk
from opentelemetry import trace
{app_handler}
appsdk.configure(otlp_endpoints=(sys.argv[1],), max_export_batch_size=50)
tracer = trace.get_tracer("test.exits")
for i in range(600):
    with tracer.start_as_current_span("work", attributes={{"i": i}}):
        pass
print("ready", flush=True)
threading.Event().wait(60)
"""

_APP_HANDLER = """
def graceful(signum, frame):
    print("app handler ran", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, graceful)
"""


def _run_until_ready(script: str, receiver: OTLPReceiver, tmp_path: Path) -> subprocess.Popen[str]:
    env = clean_env(APPSDK_METRICS="false", PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", script, receiver.traces_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def test_sigterm_exports_what_the_process_holds_then_ends_as_sigterm(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    child = _run_until_ready(_SIGTERM_CHILD.format(app_handler=""), receiver, tmp_path)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGTERM
    # Within the shutdown deadline the rest is sent, or spooled for the next start.
    delivered = {s.span_id for s in receiver.spans}
    assert len(delivered | _spooled_span_ids(tmp_path / ".appsdk" / "spool.db")) == 600


def _spooled_span_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        bodies = [row[0] for row in db.execute("SELECT body FROM spool")]
    return {span.span_id for body in bodies for span in decode(gzip.decompress(body))}


def test_sigterm_chains_to_the_applications_own_handler(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    # The application's handler is installed after configure() here, as a framework would;
    # installed before, appsdk flushes and then calls it.
    script = _SIGTERM_CHILD.format(app_handler="")
    script = script.replace('print("ready"', _APP_HANDLER + '\nprint("ready"')
    child = _run_until_ready(script, receiver, tmp_path)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and "app handler ran" in out
    assert len({s.span_id for s in receiver.spans}) == 600


def test_sigterm_flushes_before_an_earlier_application_handler(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    script = _SIGTERM_CHILD.format(app_handler=textwrap.dedent(_APP_HANDLER))
    child = _run_until_ready(script, receiver, tmp_path)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0 and "app handler ran" in out
    assert len({s.span_id for s in receiver.spans}) == 600


def _worker(index: int) -> None:
    @appsdk.observe()
    def task(n: int) -> int:
        return n * 2

    for n in range(50):
        task(n)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads (3.12+)
def test_multiprocessing_workers_flush_at_their_exit(receiver: OTLPReceiver) -> None:
    appsdk.configure(otlp_endpoints=(receiver.traces_url,))
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    receiver.wait_for_spans(100)
    assert len({s.span_id for s in receiver.spans}) == 100
