"""The ``appsdk`` command line: look at recorded traces, check the configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from appsdk.errors import AppSDKError

__all__ = ["app", "main"]

app = typer.Typer(
    help="appsdk: application-layer tracing for llm-d and Langfuse.",
    no_args_is_help=True,
    add_completion=False,
)
traces_app = typer.Typer(help="Traces in the embedded local store.", no_args_is_help=True)
app.add_typer(traces_app, name="traces")
spool_app = typer.Typer(help="Spans waiting on disk for a backend.", no_args_is_help=True)
app.add_typer(spool_app, name="spool")

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Trace store file (default: APPSDK_STORE_PATH or .appsdk/traces.db)."
    ),
]


def _open_store(db: Path | None):  # type: ignore[no-untyped-def]
    from appsdk.config import load_settings
    from appsdk.store import TraceStore

    path = db if db is not None else load_settings().store_path
    return TraceStore(path, create=False)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@traces_app.command("list")
def traces_list(db: StoreOption = None, limit: int = 20) -> None:
    """List the most recent traces."""
    try:
        store = _open_store(db)
        summaries = store.list_traces(limit)
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    table = Table("name", "started", "duration", "spans")
    table.add_column("trace id", no_wrap=True)
    for s in summaries:
        started = datetime.fromtimestamp(s.start_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            s.name, started, f"{(s.end_ns - s.start_ns) / 1e6:.1f}ms", str(s.span_count), s.trace_id
        )
    Console(width=140).print(table)


@traces_app.command("show")
def traces_show(
    trace: Annotated[str, typer.Argument(help="A trace id, a unique prefix of one, or 'last'.")],
    db: StoreOption = None,
) -> None:
    """Print one trace as a tree: observations, models, tokens, cost, prompts, scores."""
    from appsdk.render import trace_tree

    try:
        store = _open_store(db)
        trace_id = store.resolve_trace_id(trace)
        if trace_id is None:
            raise _fail(f"no trace matches {trace!r}; `appsdk traces list` shows what is stored")
        tree = trace_tree(trace_id, store.spans(trace_id), store.scores(trace_id))
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    Console(width=160).print(tree)


@spool_app.command("status")
def spool_status(
    path: Annotated[
        Path | None, typer.Option(help="The spool (default APPSDK_SPOOL_PATH).")
    ] = None,
) -> None:
    """What waits in the spool, per exporter, and what was rejected and why."""
    from appsdk.config import load_settings
    from appsdk.spool import Spool

    where = path or load_settings().spool_path
    if not where.exists():
        Console().print(f"no spool at {where}: nothing has waited for a backend")
        return
    spool = Spool(where)
    table = Table("exporter", "batches", "spans", "bytes", "oldest")
    rejected: list[str] = []
    for status in spool.status():
        age = f"{status.oldest_age_s:.0f}s ago" if status.oldest_age_s is not None else "-"
        table.add_row(
            status.exporter, str(status.batches), str(status.spans), f"{status.bytes:,}", age
        )
        rejected += [f"{status.exporter} batch {i}: {reason}" for i, reason in status.rejected]
    Console().print(table)
    for line in rejected:
        Console().print(f"[red]rejected[/red] {line}")
    spool.close()


@spool_app.command("flush")
def spool_flush(timeout: Annotated[float, typer.Option(help="Seconds to try.")] = 30.0) -> None:
    """Send what waits in the spool to the backends configured in the environment now."""
    from appsdk import pipeline

    try:
        current = pipeline.configure(local_store="never")
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    done = current.drain_spool(timeout)
    stats = current.stats()
    pipeline.shutdown()
    for name, counts in stats.items():
        Console().print(
            f"{name}: sent {counts['resent']} spooled spans, "
            f"{counts.get('spool_pending', 0)} still waiting"
        )
    if not done:
        raise _fail("the spool is not empty: a backend is still down (see the warnings above)")


@app.command()
def doctor() -> None:
    """Check the configuration and that each backend is reachable; say what to fix."""
    from appsdk.doctor import run_checks

    console = Console(soft_wrap=True)
    ok = True
    for check in run_checks():
        mark = "[green]ok[/green]" if check.ok else "[red]FAIL[/red]"
        console.print(f"{mark}  {check.name}: {check.detail}")
        ok = ok and check.ok
    if not ok:
        raise typer.Exit(code=1)


@app.command()
def sim(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    ttft_ms: Annotated[float, typer.Option(help="Time to first token.")] = 0.0,
    itl_ms: Annotated[float, typer.Option(help="Time between tokens.")] = 0.0,
    tokens: Annotated[int, typer.Option(help="Completion tokens per answer.")] = 12,
) -> None:
    """Serve the llm-d simulator (OpenAI-compatible, llm-d headers and errors)."""
    from appsdk.sim import SimConfig, serve

    serve(port, config=SimConfig(ttft_ms=ttft_ms, itl_ms=itl_ms, completion_tokens=tokens))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
