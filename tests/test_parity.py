"""``langfuse.observe`` -> ``appsdk.observe`` changes nothing Langfuse shows.

Each scenario of tests/parity_scenarios.py runs in its own process once per SDK (forked from
one that has done that SDK's imports, both SDKs at the same time), exporting
OTLP/HTTP to a loopback receiver; the decoded spans, and the scores posted to Langfuse's API,
are compared with ids and timestamps normalized. Allowed differences: the instrumentation
scope, OTel's ``error.type`` attribute and ``exception`` events (see docs/migrating.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.parity_scenarios import KNOWN_DIFFERENCES, SCENARIOS
from tests.servers import ReceivedSpan, clean_env, otlp_receiver

ROOT = Path(__file__).resolve().parent.parent
# Attributes one SDK adds for its own bookkeeping, not part of what Langfuse shows.
_IGNORED = frozenset({"error.type"})


class _Forker:
    """``python -m tests.parity_scenarios --serve SDK``: a fresh process per scenario, forked."""

    def __init__(self, sdk: str) -> None:
        env = clean_env(APPSDK_METRICS="false", PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.parity_scenarios", "--serve", sdk],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def start(self, name: str, url: str, where: Path) -> None:
        where.mkdir()
        request = {
            "name": name,
            "url": url,
            "cwd": str(where),
            "stdout": str(where / "stdout"),
            "stderr": str(where / "stderr"),
            "timeout": 60,
        }
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def returncode(self) -> int:
        assert self.process.stdout is not None
        answer = self.process.stdout.readline()
        assert answer, f"the parity process ended ({self.process.poll()})"
        return int(json.loads(answer)["returncode"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(scope="module")
def forkers() -> Iterator[dict[str, _Forker]]:
    started = {sdk: _Forker(sdk) for sdk in ("langfuse", "appsdk")}
    try:
        yield started
    finally:
        for forker in started.values():
            forker.close()


def _run_both(
    forkers: dict[str, _Forker], name: str, tmp_path: Path
) -> dict[str, tuple[Any, list[ReceivedSpan], list[dict[str, Any]]]]:
    """The scenario under each SDK, at the same time, each in its own fresh process: what
    the caller got, the spans and the score items the receiver got."""
    with otlp_receiver() as theirs, otlp_receiver() as ours:
        receivers = {"langfuse": theirs, "appsdk": ours}
        for sdk, forker in forkers.items():
            forker.start(name, receivers[sdk].url, tmp_path / sdk)
        results = {}
        for sdk, forker in forkers.items():
            returncode = forker.returncode()
            stderr = (tmp_path / sdk / "stderr").read_text()
            assert returncode == 0, stderr
            stdout = (tmp_path / sdk / "stdout").read_text()
            results[sdk] = (
                json.loads(stdout.strip().splitlines()[-1]),
                receivers[sdk].spans,
                [
                    item
                    for request in receivers[sdk].requests
                    if request.path.split("?", 1)[0].endswith("/api/public/scores")
                    for item in json.loads(request.body)
                ],
            )
        return results


def _normalized(spans: list[ReceivedSpan]) -> list[dict[str, Any]]:
    by_id = {s.span_id: s for s in spans}
    rows = []
    for span in spans:
        parent = by_id.get(span.parent_span_id or "")
        rows.append(
            {
                "name": span.name,
                "parent": parent.name if parent else ("remote" if span.parent_span_id else None),
                "status": span.status_code,
                "attributes": {
                    key: value
                    for key, value in span.attributes.items()
                    if key.startswith("langfuse.") or key in ("user.id", "session.id")
                    if key not in _IGNORED
                },
            }
        )
    return sorted(rows, key=lambda row: (row["name"], json.dumps(row, sort_keys=True)))


def _normalized_scores(items: list[dict[str, Any]], spans: list[ReceivedSpan]) -> list[Any]:
    """Score items with their ids and timestamps left out and the trace and observation they
    name given by span names (the trace by its root's)."""
    names = {span.span_id: span.name for span in spans}
    roots = {span.trace_id: span.name for span in spans if span.parent_span_id not in names}
    rows = []
    for item in items:
        row = {key: value for key, value in item.items() if key not in ("id", "timestamp")}
        if "traceId" in row:
            row["traceId"] = roots.get(row["traceId"], "(a trace not exported)")
        if "observationId" in row:
            row["observationId"] = names.get(row["observationId"], "(not exported)")
        rows.append(row)
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_scenario_gives_the_same_trace_under_both_decorators(
    name: str, tmp_path: Path, forkers: dict[str, _Forker]
) -> None:
    if name in KNOWN_DIFFERENCES:
        pytest.skip(KNOWN_DIFFERENCES[name])
    results = _run_both(forkers, name, tmp_path)
    theirs_returned, theirs, their_scores = results["langfuse"]
    ours_returned, ours, our_scores = results["appsdk"]
    assert ours_returned == theirs_returned
    assert _normalized(ours) == _normalized(theirs)
    assert _normalized_scores(our_scores, ours) == _normalized_scores(their_scores, theirs)
