"""The ``appsdk`` command line: look at recorded traces, check the configuration."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from appsdk.errors import AppSDKError, StoreError
from appsdk.render import DEFAULT_DEPTH, printable

if TYPE_CHECKING:
    from appsdk.spool import Destination, Spool
    from appsdk.store import TraceStore

__all__ = ["app", "main"]

# Plain click help: typer's rich panels print a "<bool>" type beside every flag (--help too).
_HELP: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(
    help="appsdk: application-layer tracing for llm-d and Langfuse.",
    add_completion=False,
    **_HELP,
)
traces_app = typer.Typer(help="Traces in the embedded local store.", **_HELP)
app.add_typer(traces_app, name="traces")
spool_app = typer.Typer(help="Spans waiting on disk for a backend.", **_HELP)
app.add_typer(spool_app, name="spool")

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Trace store file (default: APPSDK_STORE_PATH or .appsdk/traces.db)."
    ),
]


_STORE = ("trace store", "--db or APPSDK_STORE_PATH")
_SPOOL = ("export spool", "--path or APPSDK_SPOOL_PATH")
_OUTBOX = ("feedback outbox", "--outbox or APPSDK_FEEDBACK_OUTBOX")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _open_store(path: Path) -> TraceStore:
    from appsdk.store import TraceStore

    return TraceStore(path, create=False)


def _fail(message: str) -> typer.Exit:
    # A Text, not a markup string: the message may quote a path, an id or a server's answer.
    line = Text("error: ", style="red") + Text(printable(message))
    Console(stderr=True, soft_wrap=True).print(line)
    return typer.Exit(code=1)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder on the way cannot be searched: something is there
        return True


def _refuse_unusable(path: Path, what: str, option: str) -> None:
    """Fail with one line if ``path`` exists but cannot be one of appsdk's SQLite files.

    SQLite's own words for these ("unable to open database file", "file is not a
    database") name neither the cause nor the fix; nothing is opened or created here.
    """
    try:
        if not path.exists():
            return
        if path.is_dir():
            raise _fail(f"{path} is a directory, not the {what}: point {option} at a file")
        if not path.is_file():  # a FIFO would block the read below
            raise _fail(f"{path} is not a regular file: point {option} at the {what} file")
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise _fail(
            f"cannot read the {what} at {path} ({exc.strerror or type(exc).__name__}): "
            f"give this user read and write access to it, or point {option} at another file"
        ) from None
    if head and head != _SQLITE_MAGIC:
        raise _fail(
            f"{path} is not an appsdk {what} (not a SQLite file: damaged, or another file): "
            f"move it aside (appsdk then starts a new one) or point {option} at the right file"
        )


@contextmanager
def _reading(path: Path, what: str, option: str) -> Iterator[None]:
    """Turn any failure to open or read the file at ``path`` into one line naming it.

    A file can be damaged past its first page; SQLite then fails on some query, with a raw
    ``sqlite3.DatabaseError`` from modules that do not wrap it.
    """
    _refuse_unusable(path, what, option)
    try:
        yield
    except (StoreError, sqlite3.Error, OSError) as exc:
        if isinstance(exc, StoreError) and not _exists(path):
            raise  # "no trace store at ...": its message says what to run
        reason = (
            str(exc) if isinstance(exc, StoreError) else f"cannot read the {what} at {path}: {exc}"
        )
        raise _fail(
            f"{reason}; the file is damaged or unreadable: move it aside (appsdk then starts "
            f"a new one) or point {option} at another file"
        ) from None


def _store_path(db: Path | None) -> Path:
    from appsdk.config import load_settings

    try:
        return db if db is not None else load_settings().store_path
    except AppSDKError as exc:
        raise _fail(str(exc)) from None


def _cell(value: str | None) -> Text:
    # A Text, not a str: a str cell would be read as rich markup.
    return Text(printable(value)) if value is not None else Text("-", style="dim")


@traces_app.command("list")
def traces_list(
    db: StoreOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Traces listed, the latest first.")] = 20,
    user: Annotated[
        str | None,
        typer.Option(
            help="Only traces of this user id (as recorded: a pseudonym if pseudonymized)."
        ),
    ] = None,
    session: Annotated[str | None, typer.Option(help="Only traces of this session id.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Only traces of this trace name or root span name.")
    ] = None,
    errors: Annotated[
        bool, typer.Option("--errors", help="Only traces with a span at level ERROR or failed.")
    ] = False,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Also the requests to appsdk's feedback endpoint (POST .../feedback)."
        ),
    ] = False,
) -> None:
    """List the most recent traces: name, user, session, when, how long, errors."""
    from appsdk.store.db import TraceFilter

    path = _store_path(db)
    where = TraceFilter(
        user_id=user,
        session_id=session,
        name=name,
        errors=errors,
        hide_feedback_requests=not show_all,
    )
    try:
        with _reading(path, *_STORE):
            store = _open_store(path)
            summaries = store.list_traces(limit, where=where)
            hidden = 0 if show_all else store.count_feedback_requests(where)
    except AppSDKError as exc:  # no store there: the message says what to run
        raise _fail(str(exc)) from None
    table = Table("name", "user", "session", "started", "duration", "spans", "status")
    table.add_column("trace id", no_wrap=True)
    for s in summaries:
        started = datetime.fromtimestamp(s.start_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            _cell(s.name),
            _cell(s.user_id),
            _cell(s.session_id),
            started,
            f"{(s.end_ns - s.start_ns) / 1e6:.1f}ms",
            str(s.span_count),
            Text("ERROR", style="bold red") if s.error else Text("ok", style="green"),
            Text(printable(s.trace_id)),
        )
    console = Console(width=160)
    console.print(table)
    if not summaries and (user, session, name, errors) != (None, None, None, False):
        console.print(Text("No trace matches these filters."))
    if hidden:
        console.print(
            Text(
                f"{hidden} request{'s' if hidden != 1 else ''} to appsdk's feedback endpoint "
                "not listed (--all lists them).",
                style="dim",
            )
        )


@traces_app.command("show")
def traces_show(
    trace: Annotated[str, typer.Argument(help="A trace id, a unique prefix of one, or 'last'.")],
    db: StoreOption = None,
    depth: Annotated[
        int,
        typer.Option(
            min=1,
            help="Levels of spans shown; deeper ones are summed up in a marker (at most 1000).",
        ),
    ] = DEFAULT_DEPTH,
) -> None:
    """Print one trace as a tree: observations, models, tokens, cost, prompts, scores."""
    from appsdk.render import trace_tree, tree_width

    path = _store_path(db)
    try:
        with _reading(path, *_STORE):
            store = _open_store(path)
            trace_id = store.resolve_trace_id(trace)
            if trace_id is None:
                raise _fail(
                    f"no trace matches {trace!r}; `appsdk traces list` shows what is stored"
                )
            spans, scores = store.spans(trace_id), store.scores(trace_id)
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    tree = trace_tree(trace_id, spans, scores, max_depth=depth)
    # Wide enough for every level shown: rich draws nothing of a label it has no room for.
    Console(width=tree_width(tree)).print(tree)


def _current_destinations(console: Console) -> list[Destination]:
    """The destinations this environment's configuration sends to (none if it is invalid)."""
    from appsdk.config import load_settings

    try:
        return load_settings().destinations()
    except AppSDKError as exc:
        console.print(
            Text(f"the configuration is invalid, so none is marked as its own: {printable(exc)}")
        )
        return []


def _age(seconds: float | None) -> str:
    return f"oldest {seconds:.0f}s ago" if seconds is not None else "none waiting"


def _whose(current: bool) -> Text:
    if current:
        return Text("  [this configuration's: it sends these]", style="green")
    return Text(
        "  [left by another configuration: never sent with this one's credentials; "
        "only a process configured for it sends them]",
        style="yellow",
    )


def _print_spool(console: Console, where: Path, current: list[Destination]) -> None:
    from appsdk.spool import Spool

    with _reading(where, *_SPOOL):
        if not where.exists():
            console.print(Text(f"no spool at {printable(where)}: nothing has waited for a backend"))
            return
        spool = Spool(where)
        try:
            statuses = spool.status(current)
        finally:
            spool.close()
    console.print(Text(f"spool {printable(where)}", style="bold"))
    if not statuses:
        console.print(Text("  empty"))
    for status in statuses:
        name = f"  {printable(status.destination)} (identity {status.identity[:8] or 'none'})"
        console.print(Text(name) + _whose(status.current))
        console.print(
            Text(
                f"    {status.batches} batches, {status.spans} spans, {status.bytes:,} bytes, "
                f"{_age(status.oldest_age_s)}"
            )
        )
        for batch_id, reason in status.rejected:
            line = Text("    rejected", style="red")
            console.print(line + Text(f" batch {batch_id}: {printable(reason)}"))


def _print_outbox(console: Console, where: Path, current: list[Destination]) -> None:
    from appsdk.feedback.outbox import outbox_status

    with _reading(where, *_OUTBOX):
        if not where.exists():
            return
        langfuse = [d for d in current if d.name == "langfuse"]
        statuses = outbox_status(where, langfuse)
    console.print(Text(f"feedback outbox {printable(where)}", style="bold"))
    for status in statuses:
        name = f"  {printable(status.destination)} (identity {status.identity[:8] or 'none'})"
        console.print(Text(name) + _whose(status.current))
        console.print(
            Text(
                f"    {status.pending} pending, {status.delivered} delivered, "
                f"{status.rejected} rejected"
            )
        )


@spool_app.command("status")
def spool_status(
    path: Annotated[
        Path | None, typer.Option(help="The spool (default APPSDK_SPOOL_PATH).")
    ] = None,
    outbox: Annotated[
        Path | None,
        typer.Option(help="The feedback outbox (default APPSDK_FEEDBACK_OUTBOX)."),
    ] = None,
) -> None:
    """What waits on disk, per destination: spans in the spool, scores in the feedback
    outbox; what was rejected and why; and which of it this configuration sends."""
    from appsdk.config import load_settings, settings_in_force

    console = Console(soft_wrap=True)
    current = _current_destinations(console)
    try:
        where = path or load_settings().spool_path
        # The setting FeedbackClient reads its outbox from.
        box = outbox or settings_in_force("feedback_outbox").feedback_outbox
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    try:
        _print_spool(console, where, current)
        _print_outbox(console, box, current)
    except AppSDKError as exc:
        raise _fail(str(exc)) from None


@spool_app.command("flush")
def spool_flush(timeout: Annotated[float, typer.Option(help="Seconds to try.")] = 30.0) -> None:
    """Send what waits in the spool for the destinations configured in the environment now.

    Batches spooled for other destinations (another Langfuse project, another tenant) are
    not sent; ``appsdk spool status`` lists them.
    """
    from appsdk import runtime
    from appsdk.config import load_settings
    from appsdk.spool import Spool

    spool_file = ("export spool", "APPSDK_SPOOL_PATH")
    try:
        where = load_settings().spool_path
        # Before configure(): it would only warn that there is no spool, and flush nothing.
        with _reading(where, *spool_file):
            if _exists(where):
                Spool(where).close()
        current = runtime.configure(local_store="never")
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    try:
        with _reading(where, *spool_file):
            wanted = current.settings.spool and current.settings.destinations()
            if current.spool is None and wanted and _exists(where):
                # configure() warned and went on without it; flushing nothing is no success.
                raise StoreError(f"cannot open the export spool at {where}")
            done = current.drain_spool(timeout)
            stats = current.stats()
            spool = current.spool
            others = (
                [
                    s
                    for s in spool.status(current.settings.destinations())
                    if not s.current and s.batches
                ]
                if spool is not None
                else []
            )
    finally:
        runtime.shutdown()
    console = Console(soft_wrap=True)
    if not wanted:
        console.print(
            Text(
                "Nothing is configured to send to: set LANGFUSE_PUBLIC_KEY and "
                "LANGFUSE_SECRET_KEY, or OTEL_EXPORTER_OTLP_ENDPOINT, as the application does."
            )
        )
    for name, counts in stats.items():
        if "resent" not in counts:  # not an exporter (the recorder's, sampling's counts)
            continue
        console.print(
            Text(
                f"{name}: sent {counts['resent']} spooled spans, "
                f"{counts.get('spool_pending', 0)} still waiting"
            )
        )
    if others:
        console.print(
            Text(
                f"{sum(s.batches for s in others)} batches spooled for other destinations were "
                "not sent (see `appsdk spool status`)"
            )
        )
    if not done:
        raise _fail("the spool is not empty: a backend is still down (see the warnings above)")


@spool_app.command("retry-rejected")
def spool_retry_rejected() -> None:
    """Send again the batches the configured destinations rejected (after fixing the keys)."""
    _spool_maintenance(lambda spool, mine: sum(spool.retry_rejected(d) for d in mine), "retried")


@spool_app.command("purge")
def spool_purge(
    rejected: Annotated[
        bool, typer.Option("--rejected", help="Only batches a backend rejected.")
    ] = False,
    other_destinations: Annotated[
        bool,
        typer.Option(
            "--other-destinations",
            help="Only batches of destinations this configuration does not send to.",
        ),
    ] = False,
) -> None:
    """Delete spooled batches for good: all of them, or only rejected or others' ones."""

    def purge(spool: Spool, mine: list[Destination]) -> int:
        return spool.purge(mine if other_destinations else (), rejected_only=rejected)

    _spool_maintenance(purge, "deleted")


def _spool_maintenance(action: Callable[[Spool, list[Destination]], int], verb: str) -> None:
    from appsdk.config import load_settings
    from appsdk.spool import Spool

    try:
        settings = load_settings()
        where = settings.spool_path
        with _reading(where, "export spool", "APPSDK_SPOOL_PATH"):
            if not _exists(where):
                Console(soft_wrap=True).print(Text(f"No spool at {where}: nothing to do."))
                return
            spool = Spool(where)
            try:
                count = action(spool, list(settings.destinations()))
            finally:
                spool.close()
    except AppSDKError as exc:
        raise _fail(str(exc)) from None
    Console(soft_wrap=True).print(Text(f"{verb} {count} batches in {where}"))


@app.command()
def doctor() -> None:
    """Check the configuration and that each backend is reachable; say what to fix."""
    from appsdk.doctor import run_checks

    console = Console(soft_wrap=True)
    ok = True
    for check in run_checks():
        mark = Text("ok", style="green") if check.ok else Text("FAIL", style="red")
        console.print(mark + Text(f"  {printable(check.name)}: {printable(check.detail)}"))
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
    """Serve the llm-d simulator (OpenAI-compatible, llm-d headers and errors).

    Models: sim-llama-3-8b (also as llama-3-8b), sim-llama-3-70b (llama-3-70b), sim-embed
    (embed). Its gateway and vLLM spans go where traces go (the local store by default).
    """
    from appsdk.sim import SimConfig, serve

    serve(port, config=SimConfig(ttft_ms=ttft_ms, itl_ms=itl_ms, completion_tokens=tokens))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
