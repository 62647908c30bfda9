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
