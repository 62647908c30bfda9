"""Run every benchmark in one process and print the tables.

``--quick`` for a smoke run; ``--write docs/performance.md`` also writes the page.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from benchmarks import client, decorator, export, feedback, peers, recorder, redaction, sampling
from benchmarks.common import machine

SECTIONS = (
    (
        "Decorator overhead",
        decorator,
        "A decorated call with a small string input and output, under the default (redacted) "
        "policy, against `langfuse.observe` and a bare OpenTelemetry SDK span carrying the same "
        "attributes set by hand, all exporting to a no-op exporter. Overhead is the median call "
        "minus the undecorated call.",
    ),
    (
        "Against peers, export included",
        peers,
        "The same decorated pair (`outer` calling `inner`, a string of the payload size in and "
        "another out) traced by each SDK in its own process and virtualenv (created under "
        "`.bench-envs/`: appsdk with its runtime dependencies only, peers pinned in "
        "`benchmarks/peers.py`), each "
        "configured its documented way and exporting OTLP/HTTP with its default batching to one "
        "receiver in another process on loopback; the SDKs take turns, one process each per "
        "round. The bare OTel span sets appsdk's attributes by hand (input as JSON, output); "
        "logfire runs with `send_to_logfire=False` and an OTLP exporter as an additional span "
        "processor; traceloop with metrics off. Per call is the loop's time on the caller's "
        "thread; including flush adds the time to export everything that loop queued.",
    ),
    (
        "What real apps pass in",
        recorder,
        "One decorated call (default policy, no-op exporter) per value an application hands "
        "the recorder: the shared client, cycles, lazy and huge containers, objects whose hooks "
        "run code. Overhead is the median call minus the undecorated call; the floor is the "
        "same call with a short string; chars recorded is the length of the recorded input.",
    ),
    (
        "Redaction",
        redaction,
        "Built-in detectors over 10 KB of prose, clean and with an e-mail, a phone number and an "
        "API key in it.",
    ),
    (
        "llm-d client",
        client,
        "A chat call against the simulator in its own process on loopback, non-streaming and "
        "as a 50-chunk stream read to the end: plain httpx, the minimal traced call (one bare "
        "span around a request from an httpx client instrumented with "
        "opentelemetry-instrumentation-httpx; a stream's events decoded as JSON) and "
        "`LLMDClient.chat`, all exporting to a no-op exporter.",
    ),
    (
        "Export and memory",
        export,
        "Spans per second through one exporter to a loopback OTLP receiver and to the local "
        "store; resident memory after 100,000 spans in a tight loop with the backend blackholed "
        "(it accepts connections and never answers).",
    ),
    (
        "Sampling",
        sampling,
        "A decorated call (outer and inner observation, 1 KB in and out, default policy) whose "
        "trace the head decision keeps, against one it drops (recorded into the retention "
        "buffer instead), both configured to export to one loopback OTLP receiver; then the "
        "retention buffer's size after a sustained load of dropped traces.",
    ),
    (
        "Feedback",
        feedback,
        "Submissions per second into the durable outbox (one fsync'd transaction each) and "
        "deliveries per second to a Langfuse stub.",
    ),
)

NOTES = """
## Reading the numbers

- All ratios come from one run, with the variants interleaved round by round, on the machine
  named above; they move by several percent between runs on this virtual machine. Each
  table's targets are stated beside the ratio; whether this run met them is read from the
  number, not from this text.
- "Decorator overhead" uses a no-op exporter and a short string: it isolates the caller-side
  cost of the decorator itself. What users get is "Against peers, export included", with real
  payloads and an exporter running beside the calls.
- Against peers: every SDK exports every span in the per-call runs (its queue holds the whole
  loop), and "per call" includes what its export worker takes from the caller through the GIL.
  appsdk's default policy cuts each value at 20,000 characters, so from 100 KB up it sends less
  than its peers; OpenInference stores the string as given and pays at export time, which is
  why its caller-side cost is flat with size. The thread table keeps the default queues: a
  tight loop outruns every exporter there and the excess is lost (appsdk counts it).
- `LLMDClient`: {client_ratio:.2f}x the minimal traced call and {stream_ratio:.2f}x the minimal
  traced stream in this run (medians of per-round ratios, each round running the variants back
  to back against the simulator).
- Export throughput is one worker encoding protobuf and gzip plus one sender; a tight loop
  producing spans faster than that fills the bounded queue, and the excess is counted in
  `dropped_queue_full` (memory stays flat). At high rates, sample at the head
  (see [Sampling](sampling.md)).
"""


def main() -> None:
    quick = "--quick" in sys.argv
    header = f"machine: {machine()}"
    print(header, "\n", flush=True)
    tables: dict[str, str] = {}
    values: dict[str, float] = {}
    for title, module, _ in SECTIONS:
        tables[title], numbers = module.run(quick=quick)
        values.update(numbers)
        print(f"## {title}\n\n{tables[title]}\n", flush=True)
    if "--write" in sys.argv:
        target = Path(sys.argv[sys.argv.index("--write") + 1])
        client_ratio = values["LLMDClient / minimal traced call (target <= 1.15)"]
        stream_ratio = values[
            "LLMDClient stream / minimal traced stream, 50 chunks (target <= 1.15)"
        ]
        page = (
            _page(header, tables, quick)
            .replace("{client_ratio:.2f}", f"{client_ratio:.2f}")
            .replace("{stream_ratio:.2f}", f"{stream_ratio:.2f}")
        )
        target.write_text(page)
        print(f"wrote {target}")


def _page(header: str, tables: dict[str, str], quick: bool) -> str:
    when = f"{datetime.date.today().isoformat()}, {header.removeprefix('machine: ')}"
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m benchmarks --write docs/performance.md`), "
        f"{when}" + (" (quick run)" if quick else "") + ".",
        "",
    ]
    for title, _, about in SECTIONS:
        lines += [f"## {title}", "", about, "", tables[title], ""]
    return "\n".join(lines) + NOTES


if __name__ == "__main__":
    main()
