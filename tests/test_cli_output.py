"""The terminal is safe: what ``appsdk`` prints from stored data cannot drive the terminal
(retitle the window, clear the screen, plant a link) or be read as rich markup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import appsdk
from appsdk import semconv
from appsdk.cli import app as cli
from appsdk.render import printable
from appsdk.store.db import ScoreRecord, SpanRecord, TraceStore
from tests.servers import clean_env

TITLE = "\x1b]0;pwned-title\x07"
CLEAR = "\x1b[2J\x1b[H"
LINK = "\x1b]8;;http://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
C1_CSI = "\x9b31m"
MARKUP = "[bold]loud[/bold] [link=http://evil.example/]x[/link] :skull:"
BREAKS = "line1\nline2\rline3\u2028"
BIDI = "\u202egnp.exe"
EVIL = f"{TITLE}{CLEAR}{LINK}{C1_CSI}{MARKUP}{BREAKS}{BIDI}"
TRACE = "ab" * 16
# What reaches a terminal may drive it: ESC, BEL, C1 controls, bidi overrides, breaks.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _store(path: Path) -> None:
    store = TraceStore(path)
    now = time.time_ns()
    store.write_spans(
        [
            SpanRecord(
                span_id="cd" * 8,
                trace_id=TRACE,
                parent_span_id=None,
                name=f"root {EVIL}",
                kind="INTERNAL",
                start_ns=now,
                end_ns=now + 5_000_000,
                status_code="ERROR",
                status_message=f"ValueError: bad input {EVIL}",
                scope="someone-else",
                service_name=f"svc {EVIL}",
                attributes={
                    semconv.LF_TYPE: f"generation{CLEAR}",
                    semconv.LF_MODEL: f"model {EVIL}",
                    semconv.LF_PROMPT_NAME: f"prompt {EVIL}",
                    semconv.LF_PROMPT_VERSION: 3,
                    semconv.LF_LEVEL: f"ERROR{TITLE}",
                },
            ),
            SpanRecord(
                span_id="ef" * 8,
                trace_id=TRACE,
                parent_span_id="cd" * 8,
                name=f"child {EVIL}",
                kind="CLIENT",
                start_ns=now + 1,
                end_ns=now + 2_000_000,
                status_code="OK",
                status_message=None,
                scope=None,
                service_name=None,
                attributes={semconv.LF_STATUS_MESSAGE: f"warning {EVIL}"},
            ),
        ]
    )
    store.write_score(
        ScoreRecord(
            id="s1",
            trace_id=TRACE,
            observation_id="ef" * 8,
            name=f"helpful {EVIL}",
            value=f"value {EVIL}",
            data_type="CATEGORICAL",
            comment=f"comment {EVIL}",
            created_ns=now,
        )
    )
    store.close()


def _unwrapped(output: str) -> str:
    """The tree's text with its line wraps and guides taken out (rich wraps after a space)."""
    return re.sub("\n[│├└─ ]*", "", output)


def _assert_inert(output: str) -> None:
    found = sorted({repr(c) for c in CONTROL.findall(output)})
    assert not found, f"control characters reached the terminal: {found}"
    text = _unwrapped(output)
    assert MARKUP in text  # printed as written, not interpreted
    assert printable(TITLE) in text and "\\x1b[2J" in text and "\\x9b31m" in text


def test_traces_show_prints_stored_control_characters_and_markup_as_text(
    tmp_path: Path,
) -> None:
    _store(tmp_path / "traces.db")
    result = CliRunner().invoke(cli, ["traces", "show", TRACE, "--db", str(tmp_path / "traces.db")])
    assert result.exit_code == 0, result.output
    _assert_inert(result.output)
    text = _unwrapped(result.output)
    for shown in (
        f"root {printable(EVIL)} [generation\\x1b[2J\\x1b[H]",
        f"model model {printable(EVIL)}",
        f"prompt prompt {printable(EVIL)} v3",
        f"ERROR{printable(TITLE)}: ValueError: bad input {printable(EVIL)}",
        f"(svc {printable(EVIL)})",
        f"child {printable(EVIL)} [client]",
        f"score helpful {printable(EVIL)} = value {printable(EVIL)} (CATEGORICAL)",
        f'"comment {printable(EVIL)}"',
    ):
        assert shown in text
    assert "line1\\nline2\\rline3\\u2028\\u202egnp.exe" in text


def test_traces_list_prints_names_as_text(tmp_path: Path) -> None:
    _store(tmp_path / "traces.db")
    result = CliRunner().invoke(cli, ["traces", "list", "--db", str(tmp_path / "traces.db")])
    assert result.exit_code == 0, result.output
    assert not CONTROL.findall(result.output)
    assert "[bold]loud" in result.output  # the table may wrap the rest; none of it is markup


def test_in_a_color_terminal_only_appsdks_own_styles_reach_it(tmp_path: Path) -> None:
    _store(tmp_path / "traces.db")
    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-m", "appsdk.cli", "traces", "show", TRACE, "--db", "traces.db"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout.decode()
    assert "\x1b[" in output  # colors are on: the check below is not vacuous
    # The only escape sequences are rich's colors (SGR, "ESC [ ... m"); none came from data.
    without_colors = re.sub("\x1b\\[[0-9;]*m", "", output)
    assert "\x1b" not in without_colors and "\x07" not in output and "\x9b" not in output
    assert "pwned-title" in without_colors  # shown, escaped


def test_a_span_recorded_through_appsdk_cannot_retitle_the_terminal(tmp_path: Path) -> None:
    appsdk.configure(store_path=tmp_path / "traces.db")
    user_input = f"{TITLE}{CLEAR}{MARKUP}"
    with pytest.raises(ValueError), appsdk.start_observation("lookup") as obs:
        trace_id = obs.trace_id
        raise ValueError(f"no such customer: {user_input}")
    appsdk.flush()
    result = CliRunner().invoke(
        cli, ["traces", "show", trace_id, "--db", str(tmp_path / "traces.db")]
    )
    assert result.exit_code == 0, result.output
    assert "no such customer" in result.output
    assert not CONTROL.findall(result.output) and "\x1b" not in result.output


def test_errors_quoting_the_arguments_print_them_as_text(tmp_path: Path) -> None:
    _store(tmp_path / "traces.db")
    result = CliRunner().invoke(
        cli, ["traces", "show", f"[red]nope{CLEAR}", "--db", str(tmp_path / "traces.db")]
    )
    assert result.exit_code == 1
    assert "[red]nope" in result.output and "\x1b" not in result.output


def test_doctor_prints_an_endpoint_with_control_characters_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:9/v1/{TITLE}")
    result = CliRunner().invoke(cli, ["doctor"])
    assert "127.0.0.1:9" in result.output
    assert not CONTROL.findall(result.output)


# A damaged or misplaced file is one line naming it and what to do: exit 1, no traceback.

GARBAGE = bytes(range(256)) * 64


def _damaged_past_the_first_page(path: Path) -> None:
    """A real spool whose header and schema survive but whose data pages are garbage: it
    opens, and the first query fails (what a disk error or a half-copied file leaves)."""
    import sqlite3

    from appsdk.spool import Spool, exporter_key

    spool = Spool(path)
    destination = exporter_key("otlp", "http://127.0.0.1:4318/v1/traces")
    for _ in range(60):
        spool.put(destination, GARBAGE[:3000], 3)
    spool.close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    data[half:] = GARBAGE[: len(data) - half]
    path.write_bytes(bytes(data))


def _assert_one_line_error(result: Result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("command", "file", "option"),
    [
        (["traces", "list"], ".appsdk/traces.db", "APPSDK_STORE_PATH"),
        (["traces", "show", "last"], ".appsdk/traces.db", "APPSDK_STORE_PATH"),
        (["spool", "status"], ".appsdk/spool.db", "APPSDK_SPOOL_PATH"),
        (["spool", "status"], ".appsdk/feedback.db", "APPSDK_FEEDBACK_OUTBOX"),
        (["spool", "flush", "--timeout", "0.1"], ".appsdk/spool.db", "APPSDK_SPOOL_PATH"),
    ],
)
@pytest.mark.parametrize("damage", ["garbage", "directory", "fifo"])
def test_a_damaged_default_file_is_one_line_naming_it(
    tmp_path: Path, command: list[str], file: str, option: str, damage: str
) -> None:
    path = tmp_path / file  # the autouse fixture runs every test in tmp_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        path.write_bytes(GARBAGE)
        words = ["not an appsdk", "not a SQLite file", "move it aside"]
    elif damage == "directory":
        path.mkdir()
        words = ["is a directory"]
    else:
        os.mkfifo(path)  # a read would block forever
        words = ["not a regular file"]
    line = _assert_one_line_error(CliRunner().invoke(cli, command), file, option, *words)
    assert "sqlite3" not in line


@pytest.mark.parametrize("which", ["spool", "outbox"])
def test_a_file_damaged_past_its_first_page_is_one_line_naming_it(
    tmp_path: Path, which: str
) -> None:
    path = tmp_path / f"{which}.db"
    _damaged_past_the_first_page(path)
    result = CliRunner().invoke(
        cli, ["spool", "status", f"--{'path' if which == 'spool' else 'outbox'}", str(path)]
    )
    option = "APPSDK_SPOOL_PATH" if which == "spool" else "APPSDK_FEEDBACK_OUTBOX"
    _assert_one_line_error(result, str(path), "damaged", "move it aside", option)


def test_flush_of_a_spool_damaged_past_its_first_page_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _damaged_past_the_first_page(tmp_path / ".appsdk" / "spool.db")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    result = CliRunner().invoke(cli, ["spool", "flush", "--timeout", "0.1"])
    _assert_one_line_error(result, ".appsdk/spool.db", "damaged", "APPSDK_SPOOL_PATH")


def test_a_trace_store_of_another_program_is_one_line(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE spans (span_id TEXT, trace_id TEXT, name TEXT)")
        connection.execute("INSERT INTO spans VALUES ('s1', 'abc', 'x')")
    connection.close()
    for command in (["traces", "list"], ["traces", "show", "abc"]):
        result = CliRunner().invoke(cli, [*command, "--db", str(path)])
        _assert_one_line_error(result, str(path), "trace store")


def test_stored_attributes_that_are_not_json_are_one_line(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "traces.db"
    _store(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE spans SET attributes = '{not json'")
    connection.close()
    result = CliRunner().invoke(cli, ["traces", "show", TRACE, "--db", str(path)])
    _assert_one_line_error(result, str(path), "damaged")


def test_an_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "traces.db"
    _store(path)
    if os.geteuid() == 0:  # root reads anything: make the open fail as it would for a user
        real_open = Path.open

        def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    else:
        path.chmod(0)
    result = CliRunner().invoke(cli, ["traces", "list", "--db", str(path)])
    _assert_one_line_error(result, str(path), "Permission denied", "read and write access")


def test_a_garbage_spool_in_a_real_process_prints_one_line(tmp_path: Path) -> None:
    (tmp_path / "spool.db").write_bytes(GARBAGE)
    damaged = tmp_path / "outbox.db"
    _damaged_past_the_first_page(damaged)
    for arguments in (["--path", "spool.db"], ["--outbox", "outbox.db"]):
        run = subprocess.run(
            [sys.executable, "-m", "appsdk.cli", "spool", "status", *arguments],
            capture_output=True,
            cwd=tmp_path,
            env=clean_env(),
            timeout=60,
            text=True,
        )
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
        assert arguments[1] in lines[0]


# What people filter by: user, session, tags and scores are shown; `traces list` filters by
# them; the requests to appsdk's own feedback endpoint are left out unless --all.

SECRET = "feedback-secret-" + "s" * 16
HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _invoke(store: Path, *arguments: str) -> str:
    result = CliRunner().invoke(cli, [*arguments, "--db", str(store)])
    assert result.exit_code == 0, result.output
    assert not CONTROL.findall(result.output)
    return result.output


def _listed(store: Path, *options: str) -> set[str]:
    return set(HEX_ID.findall(_invoke(store, "traces", "list", *options)))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Traces as an application records them, then a rating through the feedback endpoint
    mounted in its FastAPI app (FastAPI records that request as a trace of its own)."""
    import subprocess

    folder = tmp_path_factory.mktemp("recorded")
    run = subprocess.run(
        [sys.executable, "-c", _RECORD],
        cwd=folder,
        env=clean_env(APPSDK_METRICS="false", APPSDK_FEEDBACK_SECRET=SECRET),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ids = dict(line.split("=", 1) for line in run.stdout.split())
    return folder / ".appsdk" / "traces.db", ids


# In a process of its own: FastAPI's tracing binds to the first provider it sees.
_RECORD = """
import httpx
from fastapi import FastAPI

import appsdk
from appsdk import sim
from appsdk.feedback import default_client
from appsdk.integrations import feedback_app

appsdk.configure(service_name="shop")
ids = {}
with appsdk.trace_attributes(
    user_id="ana", session_id="s-1", tags=["beta", "rag"], trace_name="support-chat"
), appsdk.start_observation("answer", as_type="chain") as obs:
    ids["ana"] = obs.trace_id
try:
    with appsdk.trace_attributes(user_id="bob", session_id="s-2"), appsdk.start_observation(
        "lookup"
    ) as obs:
        ids["bob"] = obs.trace_id
        raise ValueError("no such order")
except ValueError:
    pass
with appsdk.start_observation("nightly-batch") as obs:
    ids["batch"] = obs.trace_id

api = FastAPI()

@api.post("/support/feedback")
def own_feedback() -> dict[str, str]:
    # The application's own endpoint of that name does work of its own: it is listed.
    with appsdk.start_observation("classify-feedback") as obs:
        return {"trace": obs.trace_id}

api.mount("/api", feedback_app())
with sim.serving(api) as url:
    ids["own"] = httpx.post(f"{url}/support/feedback").json()["trace"]
    token = appsdk.issue_feedback_token(ids["ana"])
    rated = httpx.post(
        f"{url}/api/feedback", json={"token": token, "name": "helpful", "value": True}
    )
    assert rated.status_code == 202, rated.text
default_client().flush(10)
appsdk.shutdown()
print(" ".join(f"{key}={value}" for key, value in ids.items()))
"""


def _feedback_requests(store: Path) -> set[str]:
    traces = TraceStore(store)
    try:
        return {
            t.trace_id
            for t in traces.list_traces(100)
            if [s.name for s in traces.spans(t.trace_id)] == ["POST /api/{path}"]
        }
    finally:
        traces.close()


def test_traces_show_prints_the_user_session_tags_and_scores(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    store, ids = recorded
    header, *rest = _invoke(store, "traces", "show", ids["ana"]).splitlines()
    assert header == (
        f"trace {ids['ana']}  name support-chat  user ana  session s-1  tags beta, rag"
    )
    assert any("answer [chain]" in line for line in rest)
    assert "score helpful = True (BOOLEAN)" in rest[-1]
    header = _invoke(store, "traces", "show", ids["bob"]).splitlines()[0]
    assert header == f"trace {ids['bob']}  user bob  session s-2"


def test_traces_list_shows_user_and_session_and_leaves_out_feedback_requests(
    recorded: tuple[Path, dict[str, str]],
) -> None:
    store, ids = recorded
    (feedback,) = _feedback_requests(store)
    output = _invoke(store, "traces", "list")
    rows = {HEX_ID.findall(line)[0]: line for line in output.splitlines() if HEX_ID.search(line)}
    assert set(rows) == {ids["ana"], ids["bob"], ids["batch"], ids["own"]}
    assert re.search(r"│ support-chat\s+│ ana\s+│ s-1\s+│.*│ ok\s+│", rows[ids["ana"]])
    assert re.search(r"│ lookup\s+│ bob\s+│ s-2\s+│.*│ ERROR\s+│", rows[ids["bob"]])
    assert re.search(r"│ nightly-batch\s+│ -\s+│ -\s+│", rows[ids["batch"]])
    assert "POST /support/feedback" in rows[ids["own"]]
    assert "1 request to appsdk's feedback endpoint not listed (--all lists them)." in output
    everything = _invoke(store, "traces", "list", "--all")
    assert feedback in everything and "POST /api/{path}" in everything
    assert "not listed" not in everything
    # `show last` is the first line of the list: the latest trace that is not a rating.
    assert _invoke(store, "traces", "show", "last").startswith(f"trace {ids['own']}")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--user", "ana"], {"ana"}),
        (["--user", "nobody"], set()),
        (["--session", "s-2"], {"bob"}),
        (["--name", "support-chat"], {"ana"}),  # the trace name
        (["--name", "answer"], {"ana"}),  # its root span's name
        (["--name", "lookup"], {"bob"}),
        (["--name", "classify-feedback"], set()),  # a child span's name is no trace name
        (["--name", "POST /support/feedback"], {"own"}),
        (["--errors"], {"bob"}),
        (["--errors", "--session", "s-2", "--user", "bob"], {"bob"}),
        (["--errors", "--user", "ana"], set()),
        (["--name", "POST /api/{path}"], set()),
        (["--name", "POST /api/{path}", "--all"], {"feedback"}),
        (["--limit", "2"], {"own", "batch"}),
    ],
)
def test_traces_list_filters(
    recorded: tuple[Path, dict[str, str]], options: list[str], expected: set[str]
) -> None:
    store, ids = recorded
    ids = {**ids, "feedback": next(iter(_feedback_requests(store)))}
    assert _listed(store, *options) == {ids[key] for key in expected}
    if not expected:
        assert "No trace matches these filters." in _invoke(store, "traces", "list", *options)


def _http_span(trace: int, span: int, parent: int | None, name: str, **extra: Any) -> SpanRecord:
    return SpanRecord(
        span_id=f"{trace:08x}{span:08x}",
        trace_id=f"{trace:032x}",
        parent_span_id=f"{trace:08x}{parent:08x}" if parent is not None else None,
        name=name,
        kind=extra.pop("kind", "SERVER"),
        start_ns=trace * 1_000_000 + span,
        end_ns=trace * 1_000_000 + 500,
        status_code="UNSET",
        status_message=None,
        scope=extra.pop("scope", "opentelemetry.instrumentation.asgi"),
        service_name="shop",
        attributes=extra,
    )


def test_feedback_requests_are_recognised_under_either_http_convention(tmp_path: Path) -> None:
    """asgi-style spans (old conventions, the query in http.target, "http send" children),
    the endpoint at the root of the app, a trailing slash: all hidden. A GET, another path,
    or a request that did work of its own (a span of another instrumentation) are shown."""
    old = {"http.method": "POST", "http.target": "/feedback?source=widget"}
    store = TraceStore(tmp_path / "traces.db")
    store.write_spans(
        [
            _http_span(1, 1, None, "POST /feedback", **old),
            _http_span(1, 2, 1, "POST /feedback http send", kind="INTERNAL"),
            _http_span(
                2, 1, None, "POST", **{"http.request.method": "POST", "url.path": "/v1/feedback/"}
            ),
            _http_span(
                3, 1, None, "GET /feedback", **{"http.method": "GET", "http.target": "/feedback"}
            ),
            _http_span(
                4,
                1,
                None,
                "POST /feedbacks",
                **{"http.method": "POST", "http.target": "/feedbacks"},
            ),
            _http_span(5, 1, None, "POST /feedback", **old),
            _http_span(
                5, 2, 1, "SELECT", kind="CLIENT", scope="opentelemetry.instrumentation.sqlite3"
            ),
        ]
    )
    store.close()
    shown = _listed(tmp_path / "traces.db")
    assert shown == {f"{n:032x}" for n in (3, 4, 5)}
    assert _listed(tmp_path / "traces.db", "--all") == {f"{n:032x}" for n in range(1, 6)}


def test_a_store_of_an_older_appsdk_is_listed_and_filtered(tmp_path: Path) -> None:
    """A file written before the filters' indexes existed gets them when it is opened."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            """CREATE TABLE spans (span_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL,
                parent_span_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,
                start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status_code TEXT NOT NULL,
                status_message TEXT, scope TEXT, service_name TEXT, attributes TEXT NOT NULL);
            CREATE INDEX spans_by_trace ON spans (trace_id, start_ns);
            CREATE INDEX spans_by_start ON spans (start_ns);"""
        )
        connection.executemany(
            "INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    "a1",
                    "a" * 32,
                    None,
                    "chat",
                    "INTERNAL",
                    1,
                    9,
                    "OK",
                    None,
                    "appsdk",
                    "s",
                    '{"user.id": "ana", "session.id": "s-1"}',
                ),
                ("b1", "b" * 32, None, "chat", "INTERNAL", 2, 9, "OK", None, "appsdk", "s", "{}"),
                (
                    "c1",
                    "c" * 32,
                    None,
                    "chat",
                    "INTERNAL",
                    3,
                    9,
                    "OK",
                    None,
                    "appsdk",
                    "s",
                    "{not json",
                ),
            ],
        )
    connection.close()
    assert _listed(path, "--user", "ana") == {"a" * 32}
    assert _listed(path) == {"a" * 32, "b" * 32, "c" * 32}  # a damaged row is listed too


def test_user_session_and_tags_are_printed_as_text(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces.db")
    now = time.time_ns()
    store.write_spans(
        [
            SpanRecord(
                span_id="cd" * 8,
                trace_id=TRACE,
                parent_span_id=None,
                name="root",
                kind="INTERNAL",
                start_ns=now,
                end_ns=now + 5,
                status_code="OK",
                status_message=None,
                scope="appsdk",
                service_name=None,
                attributes={
                    semconv.USER_ID: f"user {EVIL}",
                    semconv.SESSION_ID: f"session {EVIL}",
                    semconv.LF_TRACE_TAGS: [f"tag {EVIL}", "plain"],
                    semconv.LF_TRACE_NAME: f"name {EVIL}",
                },
            )
        ]
    )
    store.close()
    path = tmp_path / "traces.db"
    shown = CliRunner().invoke(cli, ["traces", "show", TRACE, "--db", str(path)]).output
    _assert_inert(shown)
    text = _unwrapped(shown)
    for value in (f"name {EVIL}", f"user {EVIL}", f"session {EVIL}", f"tag {EVIL}"):
        assert printable(value) in text
    listed = CliRunner().invoke(cli, ["traces", "list", "--db", str(path)]).output
    assert not CONTROL.findall(listed) and "\x1b" not in listed
    # Long cells are cut (…): what is shown of each is escaped, and markup is text.
    assert listed.count("\\x1b]0;pwned-title") == 3 and "[link=http://evil" in listed
    # Filters take the values as recorded, control characters and all.
    assert _listed(path, "--user", f"user {EVIL}") == {TRACE}
