"""Run every benchmark in one process and print the tables (``--quick`` for a smoke run)."""

from __future__ import annotations

import sys

from benchmarks import client, decorator, export, feedback, redaction
from benchmarks.common import machine


def main() -> None:
    quick = "--quick" in sys.argv
    print(f"machine: {machine()}\n")
    sections = (
        ("Decorator overhead", decorator),
        ("Redaction", redaction),
        ("llm-d client", client),
        ("Export and memory", export),
        ("Feedback", feedback),
    )
    for title, module in sections:
        text, _ = module.run(quick=quick)
        print(f"## {title}\n\n{text}\n")


if __name__ == "__main__":
    main()
