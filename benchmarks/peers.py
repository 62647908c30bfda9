"""appsdk.observe against its peers, each SDK in its own process and environment, export included.

One run: one OTLP/HTTP receiver in its own process on loopback; every SDK (each in a virtualenv
of its own under ``.bench-envs/``: appsdk's runtime dependencies only, each peer with the pinned
versions in ``PEERS``) traces the same ``outer -> inner`` pair with string input and output of
each payload size, configured its own documented way and exporting to that receiver with its default
batching. The SDKs take turns round by round (one subprocess per SDK per round, the order
rotating); the tables give medians over rounds. ``benchmarks/peers/workload.py`` is the
subprocess side, ``benchmarks/peers/receiver.py`` the receiver.

``python -m benchmarks.peers --setup`` creates the environments (``make bench`` does);
``python -m benchmarks.peers [--quick]`` runs this section alone.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import table

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / ".bench-envs"
SCRIPTS = Path(__file__).resolve().parent / "peers"
OTEL = ("opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-http==1.45.2")


@dataclass(frozen=True)
class Peer:
    label: str
    requirements: tuple[str, ...]


# Exact versions that install together from PyPI, one environment each (checked with
# `pip index versions`). traceloop-sdk 0.62.4 depends, unpinned, on some forty
# opentelemetry-instrumentation-* packages: milvus 0.61+ needs
# opentelemetry-semantic-conventions-ai>=0.5.2, which PyPI does not have (0.5.1 is its latest),
# so milvus stays at 0.60.0; opentelemetry-instrumentation-threading has no 0.66b2, so that
# environment's OTel is 1.45.1/0.66b1; and traceloop.sdk imports httpx without declaring it.
PEERS = {
    "otel": Peer("bare OTel SDK span (same attributes by hand)", OTEL),
    "langfuse": Peer("langfuse.observe", ("langfuse==5.0.4", *OTEL)),
    "traceloop": Peer(
        "traceloop @workflow/@task",
        (
            "traceloop-sdk==0.62.4",
            "opentelemetry-instrumentation-milvus==0.60.0",
            "opentelemetry-sdk==1.45.1",
            "opentelemetry-exporter-otlp-proto-http==1.45.1",
            "opentelemetry-instrumentation==0.66b1",
            "httpx==0.28.1",
        ),
    ),
    "openinference": Peer(
        "OpenInference @tracer.chain",
        (
            "openinference-instrumentation==0.1.72",
            "openinference-semantic-conventions==0.1.42",
            *OTEL,
        ),
    ),
    "logfire": Peer(
        "logfire.instrument(record_return=True)",
        ("logfire==5.4.0", *OTEL),
    ),
}
# appsdk too gets an environment of its own, with its runtime dependencies only: the repo's .venv
# also holds the dev tools, and with click, rich and pygments importable httpx loads its CLI on
# import (some 80 ms that an application without them never pays). Editable, so it runs the
# working tree; recreated when pyproject.toml changes.
APPSDK = Peer("appsdk.observe (default policy)", ("-e", str(ROOT)))

LABELS = {
    "none": "no tracing",
    "appsdk": "appsdk.observe (default policy)",
    **{name: peer.label for name, peer in PEERS.items()},
}
SIZES = (("32 B", 32), ("100 B", 100), ("1 KB", 1024), ("10 KB", 10_240))
SIZES += (("100 KB", 102_400), ("1 MB", 1_048_576))
# Calls per size (the same for every SDK): full run, quick run.
CALLS = {32: (3000, 1000), 100: (3000, 1000), 1024: (3000, 1000), 10_240: (1000, 200)}
CALLS |= {102_400: (100, 20), 1_048_576: (12, 3)}
ROUNDS = (7, 3)  # full, quick
THREAD_CALLS = (10_000, 2000)
# Per-call runs only: every SDK's queue (OTEL_BSP_MAX_QUEUE_SIZE, which appsdk reads too) holds
# the whole loop, so each exports every span; a dropped span costs less and would flatter its
# SDK. The thread runs keep the default queues and count what is lost.
UNBOUNDED_QUEUE = "1000000"
THREADED = ("appsdk", "otel", "traceloop")
THREADS = (1, 2, 4, 8)


def ensure_envs(log: bool = True) -> dict[str, str]:
    """Each peer's interpreter, its environment created once; a peer that fails is left out.

    Returns:
        name -> python path, or name -> "error: why" for a peer that could not be installed.
    """
    found: dict[str, str] = {}
    for name, peer in {"appsdk": APPSDK, **PEERS}.items():
        folder = ENVS / name
        python = folder / "bin" / "python"
        stamp = folder / ".bench-requirements"
        wanted = "\n".join(peer.requirements)
        if name == "appsdk":
            wanted += "\n" + (ROOT / "pyproject.toml").read_text()
        if stamp.exists() and stamp.read_text() == wanted and python.exists():
            found[name] = str(python)
            continue
        if log:
            print(
                f"creating {folder.relative_to(ROOT)}: {' '.join(peer.requirements)}",
                file=sys.stderr,
                flush=True,
            )
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*pip, *peer.requirements], capture_output=True, text=True)
        if done.returncode != 0:
            lines = [x for x in done.stderr.splitlines() if "is ignored" not in x]
            found[name] = "error: " + " / ".join(lines[-6:])
            continue
        stamp.write_text(wanted)
        found[name] = str(python)
    return found


@contextmanager
def receiver() -> Iterator[str]:
    """The receiver's base URL, served by its own process for as long as the block runs."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "receiver.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().split()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _environment(sdk: str, endpoint: str, home: str, mode: str) -> dict[str, str]:
    """A clean environment with only what the SDK's own documented configuration reads."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
    env |= {"HOME": home, "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1"}
    if mode == "calls":
        env["OTEL_BSP_MAX_QUEUE_SIZE"] = UNBOUNDED_QUEUE
    if sdk in ("otel", "openinference"):
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint + "/v1/traces"
    if sdk == "traceloop":  # traces only, as every other SDK here
        env |= {"TRACELOOP_METRICS_ENABLED": "false", "TRACELOOP_TELEMETRY": "false"}
    return env


class Runner:
    """Runs one SDK's workload in its own interpreter against the shared receiver."""

    def __init__(self, pythons: dict[str, str], endpoint: str, folder: str) -> None:
        self.pythons = pythons
        self.endpoint = endpoint
        self.folder = folder

    def _command(self, sdk: str, mode: str, options: object) -> list[str]:
        script = str(SCRIPTS / "workload.py")
        return [self.pythons[sdk], script, sdk, self.endpoint, mode, json.dumps(options)]

    def _env(self, sdk: str, mode: str) -> dict[str, str]:
        home = Path(self.folder) / sdk
        home.mkdir(exist_ok=True)
        return _environment(sdk, self.endpoint, str(home), mode)

    def result(self, sdk: str, mode: str, options: object) -> list[dict[str, float]]:
        env = self._env(sdk, mode)
        command = self._command(sdk, mode, options)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1800, cwd=env["HOME"], env=env
        )
        for line in done.stdout.splitlines():
            if line.startswith("@@RESULT "):
                rows: list[dict[str, float]] = json.loads(line.removeprefix("@@RESULT "))
                return rows
        raise RuntimeError(f"{sdk} {mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")

    def start_ms(self, sdk: str) -> dict[str, float]:
        """From spawning the interpreter to the first traced call returned (``called``) and to
        its span flushed (``ms``), in milliseconds."""
        env = self._env(sdk, "start")
        started = time.perf_counter()
        process = subprocess.Popen(
            self._command(sdk, "start", {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=env["HOME"],
            env=env,
        )
        assert process.stdout is not None
        called = 0.0
        for line in process.stdout:
            if line.startswith("@@CALLED"):
                called = (time.perf_counter() - started) * 1e3
            if line.startswith("@@READY"):
                elapsed = (time.perf_counter() - started) * 1e3
                process.stdout.read()
                process.wait(60)
                return {"called": called, "ms": elapsed}
        process.wait(60)
        raise RuntimeError(f"{sdk} start failed with exit code {process.returncode}")


def _rotated(names: list[str], turn: int) -> list[str]:
    turn %= len(names)
    return names[turn:] + names[:turn]


def measure(pythons: dict[str, str], quick: bool) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every round: each SDK's calls, threads and start-up, the order rotating per round."""
    rounds = ROUNDS[quick]
    sizes = {"sizes": [[size, CALLS[size][quick]] for _, size in SIZES]}
    threads = {"threads": list(THREADS), "calls": THREAD_CALLS[quick], "size": 1024}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {"calls": {}, "threads": {}}
    samples["start"] = {}
    names = list(pythons)
    with tempfile.TemporaryDirectory() as folder, receiver() as endpoint:
        runner = Runner(pythons, endpoint, folder)
        for turn in range(rounds):
            print(f"  peers: round {turn + 1}/{rounds}", file=sys.stderr, flush=True)
            for sdk in _rotated(names, turn):
                samples["calls"].setdefault(sdk, []).extend(runner.result(sdk, "calls", sizes))
            for sdk in _rotated([n for n in names if n in THREADED], turn):
                samples["threads"].setdefault(sdk, []).extend(
                    runner.result(sdk, "threads", threads)
                )
            for sdk in _rotated(names, turn):
                samples["start"].setdefault(sdk, []).append(runner.start_ms(sdk))
    return samples


def _median(rows: list[dict[str, float]], key: str, **match: float) -> float:
    return statistics.median(r[key] for r in rows if all(r[k] == v for k, v in match.items()))


def _paired(
    rows_a: list[dict[str, float]], rows_b: list[dict[str, float]], size: int, key: str
) -> float:
    """Median of per-round ratios: each pair ran in the same round, so drift cancels."""
    a = [r[key] for r in rows_a if r["size"] == size]
    b = [r[key] for r in rows_b if r["size"] == size]
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _calls_tables(calls: dict[str, list[dict[str, float]]]) -> tuple[str, dict[str, float]]:
    numbers: dict[str, float] = {}
    header = ("SDK", *(label for label, _ in SIZES))
    tables = []
    for key, title in (
        ("per_call_us", "Per call on the caller's thread (us, median)"),
        ("total_us", "Per call including flush and export (us, median)"),
    ):
        rows = []
        for sdk, samples in calls.items():
            values = [_median(samples, key, size=size) for _, size in SIZES]
            numbers |= {
                f"{sdk} {key} {label}": v for (label, _), v in zip(SIZES, values, strict=True)
            }
            rows.append((LABELS[sdk], *(f"{v:,.1f}" for v in values)))
        tables.append(f"{title}:\n\n" + table(rows, header))
    rows = []
    for sdk, samples in calls.items():
        if sdk == "none":
            continue
        cells = []
        for _, size in SIZES:
            per = [r for r in samples if r["size"] == size]
            spans = statistics.median(r["spans"] / r["calls"] for r in per)
            kb = statistics.median(r["bytes_decoded"] / r["calls"] / 1024 for r in per)
            wire = statistics.median(r["bytes_wire"] / r["calls"] / 1024 for r in per)
            cells.append(f"{spans:.1f} / {kb:,.1f} / {wire:,.1f}")
        rows.append((LABELS[sdk], *cells))
    tables.append(
        "Received per call: spans (2 are sent) / KB of OTLP protobuf / KB on the wire (after "
        "the SDK's compression, if any):\n\n" + table(rows, header)
    )
    return "\n\n".join(tables), numbers


def _ratios(calls: dict[str, list[dict[str, float]]]) -> tuple[str, dict[str, float]]:
    """appsdk against bare OTel and the faster of traceloop and OpenInference, per size."""
    ratios: dict[str, float] = {}
    rivals = [name for name in ("traceloop", "openinference") if name in calls]
    columns = ["payload"]
    if "otel" in calls:
        columns += ["/ bare OTel", "incl. export"]
    if rivals:
        columns += ["/ fastest of traceloop, OpenInference", "incl. export"]
    rows = []
    for label, size in SIZES:
        cells = [label]
        if "otel" in calls:
            target = " (target <= 1.25)" if size == 1024 else ""
            per_call = _paired(calls["appsdk"], calls["otel"], size, "per_call_us")
            total = _paired(calls["appsdk"], calls["otel"], size, "total_us")
            ratios[f"appsdk / bare OTel span, {label}{target}"] = per_call
            ratios[f"appsdk / bare OTel span incl. export, {label}"] = total
            cells += [f"{per_call:.2f}", f"{total:.2f}"]
        if rivals:
            fastest = min(rivals, key=lambda n: _median(calls[n], "per_call_us", size=size))
            per_call = _paired(calls["appsdk"], calls[fastest], size, "per_call_us")
            total = _paired(calls["appsdk"], calls[fastest], size, "total_us")
            name = "fastest of traceloop and OpenInference"
            ratios[f"appsdk / {name}, {label} (target <= 1)"] = per_call
            ratios[f"appsdk / {name} incl. export, {label}"] = total
            cells += [f"{per_call:.2f} ({fastest})", f"{total:.2f}"]
        rows.append(tuple(cells))
    return table(rows, tuple(columns)), ratios


def _threads_table(threads: dict[str, list[dict[str, float]]]) -> tuple[str, dict[str, float]]:
    numbers: dict[str, float] = {}
    rows = []
    for sdk, samples in threads.items():
        cells = []
        for count in THREADS:
            per = [r for r in samples if r["threads"] == count]
            rate = statistics.median(r["spans"] / r["seconds"] for r in per)
            lost = statistics.median(r["sent"] - r["spans"] for r in per)
            sent = per[0]["sent"]
            numbers[f"{sdk} spans/s delivered, {count} threads"] = rate
            numbers[f"{sdk} spans lost, {count} threads"] = lost
            cells.append(f"{rate:,.0f} ({lost:,.0f} of {sent:,.0f} lost)")
        rows.append((LABELS[sdk], *cells))
    header = ("SDK", *(f"{n} thread{'s' if n > 1 else ''}" for n in THREADS))
    return table(rows, header), numbers


def run(quick: bool = False) -> tuple[str, dict[str, float]]:
    envs = ensure_envs()
    pythons = {"none": sys.executable}
    pythons |= {name: path for name, path in envs.items() if not path.startswith("error")}
    missing = {name: why for name, why in envs.items() if why.startswith("error")}
    samples = measure(pythons, quick)
    calls_text, numbers = _calls_tables(samples["calls"])
    ratios_text, ratios = _ratios(samples["calls"])
    threads_text, thread_numbers = _threads_table(samples["threads"])
    start = {sdk: _median(rows, "ms") for sdk, rows in samples["start"].items()}
    called = {sdk: _median(rows, "called") for sdk, rows in samples["start"].items()}
    ratios["appsdk start, interpreter to first call returned (ms) (target <= 250)"] = called[
        "appsdk"
    ]
    ratios["appsdk start, interpreter to first call flushed (ms)"] = start["appsdk"]
    start_rows = [
        (
            LABELS[k],
            f"{called[k]:,.0f}",
            f"{ms:,.0f}",
            f"{called[k] - called['none']:,.0f}",
        )
        for k, ms in start.items()
    ]
    counts = ", ".join(f"{label} {CALLS[size][quick]:,}" for label, size in SIZES)
    parts = [
        f"{ROUNDS[quick]} rounds; calls per size: {counts} (plus a tenth to warm up); every "
        f"queue holds the whole loop (OTEL_BSP_MAX_QUEUE_SIZE={UNBOUNDED_QUEUE}) so that no "
        "SDK drops a span here.",
        calls_text,
        "appsdk's cost over the peer's (median of per-round ratios; per call on the caller's "
        "thread, then including flush and export):\n\n" + ratios_text,
        f"Delivered spans per second: {THREAD_CALLS[quick]:,} calls (1 KB in and out, 2 spans "
        "each) in a tight loop split across threads, over the wall time up to the end of the "
        "flush; lost spans are those the receiver never got:\n\n" + threads_text,
        "Time to first traced call (import, configure, decorate, one call), from spawning the "
        "interpreter, and to its span flushed to the receiver (ms, median):\n\n"
        + table(
            start_rows,
            ("SDK", "first call returned", "its span flushed", "returned, over no tracing"),
        ),
    ]
    if missing:
        parts.append("\n".join(f"- {name} not measured: {why}" for name, why in missing.items()))
    numbers |= thread_numbers | {f"{sdk} start ms": ms for sdk, ms in start.items()}
    numbers |= {f"{sdk} first call ms": ms for sdk, ms in called.items()}
    return "\n\n".join(parts), ratios | numbers


def main() -> None:
    if "--setup" in sys.argv:
        for name, result in ensure_envs().items():
            print(f"{name}: {result}")
        return
    text, _ = run(quick="--quick" in sys.argv)
    print(text)


if __name__ == "__main__":
    main()
