"""Redaction throughput: prose clean and with a few secrets, hostile input, short strings.

Standalone: ``python -m benchmarks.redaction [--quick]``.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable

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
# Typographic prose takes the non-ASCII path (dashes are normalized before detection).
_UNICODE_SENTENCE = (
    "Le rapport trimestriel — publié à Zürich — montre une croissance régulière; "
    "l\u2019équipe s\u2019attend à une demande soutenue en 2025, «sans surprise». "
)
CLEAN_UNICODE = (_UNICODE_SENTENCE * 80)[:10_240]

# What spans carry one at a time: questions, URLs, model names, ids, status lines (30-100 B).
SHORT = (
    "What is the refund policy for annual plans?",
    "POST https://gateway.internal/v1/chat/completions",
    "model gpt-4o-mini-2024-07-18 answered in 812 ms",
    "The answer is 42, according to the 2024 report.",
    "chatcmpl-9f3a1c2b4d5e6f708192a3b4c5d6e7f8",
    "Summarize the meeting notes from Tuesday in three bullets, and keep it short.",
    "Thanks! Could you also translate it to German, please? The customer prefers it.",
    "upstream request failed: 503 Service Unavailable after 3 retries (trace 4bf92f3577b34da6)",
)


def adversarial() -> dict[str, str]:
    """Inputs built to make a regex engine backtrack or a scanner loop per byte."""
    rng = random.Random(7)
    numbers = " ".join(str(rng.randrange(1, 10 ** rng.randint(1, 20))) for _ in range(600))
    return {
        "numbers printed as text (5.6 KB)": numbers[: numbers.rfind(" ", 0, 5_600)],
        "one digit run (100 KB)": "".join(rng.choice("0123456789") for _ in range(100_000)),
        "digits and '-' (100 KB)": "1-" * 50_000,
        "digits and '.' (100 KB)": "1." * 50_000,
        "digits and ' ' (100 KB)": "1 " * 50_000,
        "'sk-' repeated (300 KB)": "sk-" * 100_000,
        "'sk- ' repeated (300 KB)": "sk- " * 75_000,
        "'AKIA' repeated (300 KB)": "AKIA" * 75_000,
        "'eyJ' repeated (300 KB)": "eyJ" * 100_000,
        "'eyJa.' repeated (300 KB)": "eyJa." * 60_000,
        "'-----BEGIN' repeated (300 KB)": "-----BEGIN" * 30_000,
        "'a@' repeated (200 KB)": "a@" * 100_000,
        "'@' repeated (300 KB)": "@" * 300_000,
        "deep brackets (200 KB)": "(" * 100_000 + ")" * 100_000,
        "'://' repeated (300 KB)": "://" * 100_000,
        "':' repeated (300 KB, IPv6 scan)": ":" * 300_000,
        "'a:' repeated (200 KB, IPv6 scan)": "a:" * 100_000,
        "'x=' repeated (200 KB)": "x=" * 100_000,
        "zero-width spaces (300 KB)": "\u200b" * 100_000,
    }


def _throughput(
    redact: Callable[[str], str], texts: dict[str, str], *, calls: int, rounds: int
) -> dict[str, float]:
    """MB/s of each text (us per call is bytes per MB/s), the texts taking turns each round."""

    def once(text: str) -> Callable[[], object]:
        return lambda: redact(text)

    medians = interleaved(
        {name: once(text) for name, text in texts.items()}, calls=calls, rounds=rounds
    )
    return {name: len(texts[name].encode()) / medians[name] for name in texts}


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    redact = Policy().redactor.redact
    assert "ana.silva" not in redact(DIRTY)
    prose = _throughput(
        redact,
        {
            "clean prose, 10 KB": CLEAN,
            "clean prose, 10 KB, non-ASCII": CLEAN_UNICODE,
            "prose with 3 secrets, 10 KB": DIRTY,
        },
        calls=50 if quick else 200,
        rounds=5 if quick else 15,
    )
    targets = {"clean prose, 10 KB": ">= 150", "prose with 3 secrets, 10 KB": ">= 20"}
    rows: list[tuple[str, ...]] = [(n, f"{v:.1f}", targets.get(n, "")) for n, v in prose.items()]

    short_us = interleaved(
        {"short": lambda: [redact(text) for text in SHORT]},
        calls=500 if quick else 2_000,
        rounds=5 if quick else 15,
    )["short"]
    short = sum(len(text) for text in SHORT) / short_us
    sizes = f"{min(map(len, SHORT))}-{max(map(len, SHORT))} B"
    rows.append(
        (f"short strings ({sizes}), {short_us / len(SHORT):.2f} us each", f"{short:.1f}", "")
    )

    hostile = _throughput(redact, adversarial(), calls=1 if quick else 3, rounds=3 if quick else 7)
    rows += [(f"adversarial: {name}", f"{mbps:.1f}", ">= 10") for name, mbps in hostile.items()]
    throughput = {**prose, "short strings": short}
    throughput.update((f"adversarial: {name}", mbps) for name, mbps in hostile.items())
    return table(rows, ("redaction input", "MB/s", "target")), throughput


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv)[0])
