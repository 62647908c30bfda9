"""Redaction throughput on 10 KB of prose, clean and with a few secrets."""

from __future__ import annotations

from appsdk import Policy
from benchmarks.common import interleaved, table

_SENTENCE = (
    "The quarterly report shows steady growth across regions, and the team expects "
    "continued demand in 2025 as new customers adopt the platform. "
)
CLEAN = (_SENTENCE * 80)[:10_240]
DIRTY = (
    CLEAN[:3000]
    + " write to ana.silva@example.com "
    + CLEAN[3000:6000]
    + " call +1 (555) 123-4567, key sk-proj-Ab3dEf6hIj9kLm2nOp5q "
    + CLEAN[6000:9900]
)


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    redactor = Policy().redactor
    assert "ana.silva" not in redactor.redact(DIRTY)
    medians = interleaved(
        {"clean": lambda: redactor.redact(CLEAN), "few secrets": lambda: redactor.redact(DIRTY)},
        calls=50 if quick else 200,
        rounds=5 if quick else 15,
    )
    throughput = {
        "clean prose (target >= 50 MB/s)": len(CLEAN) / medians["clean"],
        "prose with a few secrets (target >= 20 MB/s)": len(DIRTY) / medians["few secrets"],
    }
    rows = [(name, f"{mbps:.1f}") for name, mbps in throughput.items()]
    return table(rows, ("10 KB redaction", "MB/s")), throughput
