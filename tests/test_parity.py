"""``langfuse.observe`` -> ``appsdk.observe`` changes nothing Langfuse shows.

Each scenario of tests/parity_scenarios.py runs in its own process once per SDK, exporting
OTLP/HTTP to a loopback receiver; the decoded spans are compared with ids and timestamps
normalized. Allowed differences: the instrumentation scope, OTel's ``error.type`` attribute and
``exception`` events (see docs/migrating.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.parity_scenarios import KNOWN_DIFFERENCES, SCENARIOS
from tests.servers import ReceivedSpan, otlp_receiver

ROOT = Path(__file__).resolve().parent.parent
# Attributes one SDK adds for its own bookkeeping, not part of what Langfuse shows.
_IGNORED = frozenset({"error.type"})


def _run(sdk: str, name: str, tmp_path: Path) -> tuple[Any, list[ReceivedSpan]]:
    with otlp_receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        env.update(APPSDK_METRICS="false", PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-m", "tests.parity_scenarios", sdk, name, receiver.url],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        returned = json.loads(done.stdout.strip().splitlines()[-1])
        return returned, receiver.spans


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


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_scenario_gives_the_same_trace_under_both_decorators(name: str, tmp_path: Path) -> None:
    if name in KNOWN_DIFFERENCES:
        pytest.skip(KNOWN_DIFFERENCES[name])
    theirs_returned, theirs = _run("langfuse", name, tmp_path)
    ours_returned, ours = _run("appsdk", name, tmp_path)
    assert ours_returned == theirs_returned
    assert _normalized(ours) == _normalized(theirs)
