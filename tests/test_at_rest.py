"""Private at rest: appsdk's folders are 0700 and its files 0600, whatever the umask."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import appsdk
from appsdk.store.db import TraceStore
from tests.langfuse_stub import LangfuseStub, langfuse_stub
from tests.servers import url_of

TRACE = "ab" * 16


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask during the test: the usual one, and one that takes nothing away."""
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def _modes(folder: Path) -> dict[str, int]:
    """The permission bits of ``folder`` (under ``"."``) and of every entry in it."""
    entries = {entry.name: entry.lstat() for entry in folder.iterdir()}
    assert all(stat.S_ISREG(s.st_mode) for s in entries.values()), entries
    modes = {name: stat.S_IMODE(s.st_mode) for name, s in entries.items()}
    return {".": stat.S_IMODE(folder.lstat().st_mode), **modes}


def _private(folder: Path, database: str) -> dict[str, int]:
    """Assert ``folder`` is 0700 and every file in it 0600; the database's siblings are there."""
    modes = _modes(folder)
    assert {database, f"{database}-wal", f"{database}-shm"} <= modes.keys(), modes
    assert modes == {".": 0o700, **dict.fromkeys(set(modes) - {"."}, 0o600)}
    return modes


def _answer(question: str) -> str:
    return f"the private answer to {question}"


def test_a_traced_call_is_stored_in_a_private_folder(tmp_path: Path, umask: int) -> None:
    appsdk.configure()  # the default store: .appsdk/traces.db in the working directory
    appsdk.observe(_answer)("what is my salary?")
    assert appsdk.flush()
    folder = tmp_path / ".appsdk"
    _private(folder, "traces.db")  # -wal and -shm exist while the store is open
    appsdk.shutdown()
    assert set(_modes(folder).values()) <= {0o700, 0o600}
    store = TraceStore(folder / "traces.db", create=False)
    assert store.count_spans() == 1
    store.close()


def test_spans_a_backend_refuses_are_spooled_in_a_private_folder(
    tmp_path: Path, reserved: socket.socket, umask: int
) -> None:
    folder = tmp_path / "state" / "spool"
    appsdk.configure(
        otlp_traces_endpoint=url_of(reserved) + "/v1/traces", spool_path=folder / "spool.db"
    )
    appsdk.observe(_answer)("what is my salary?")
    appsdk.flush()
    assert appsdk.stats()["otlp"]["spooled"] == 1
    _private(folder, "spool.db")
    appsdk.shutdown()
    assert set(_modes(folder).values()) <= {0o700, 0o600}


@pytest.fixture
def stub() -> Iterator[LangfuseStub]:
    with langfuse_stub() as s:
        yield s


def test_feedback_waits_in_a_private_outbox(tmp_path: Path, stub: LangfuseStub, umask: int) -> None:
    folder = tmp_path / "feedback"
    appsdk.configure(**stub.options(), feedback_outbox=folder / "outbox.db")
    appsdk.submit_feedback(trace_id=TRACE, name="helpful", value=False, comment="rude")
    _private(folder, "outbox.db")  # the rating is on disk before submit returns
    assert appsdk.flush()
    assert [s["name"] for s in stub.scores.values()] == ["helpful"]
    appsdk.shutdown()
    assert set(_modes(folder).values()) <= {0o700, 0o600}


def _older_store(folder: Path) -> TraceStore:
    """A store as an older appsdk left it: 0755 folder, 0644 files, still open elsewhere."""
    folder.mkdir()
    older = TraceStore(folder / "traces.db")
    (folder / "traces.db-journal").touch()  # empty: not a hot journal, only a leftover
    for entry in [folder, *folder.iterdir()]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)
    assert _modes(folder) == {
        ".": 0o755,
        **dict.fromkeys(
            ["traces.db", "traces.db-wal", "traces.db-shm", "traces.db-journal"], 0o644
        ),
    }
    return older


def test_an_older_readable_folder_and_its_files_are_tightened(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / ".appsdk"
    older = _older_store(folder)
    try:
        appsdk.configure()
        appsdk.observe(_answer)("what is my salary?")
        assert appsdk.flush()
        assert _private(folder, "traces.db").keys() >= {"traces.db-journal"}
    finally:
        older.close()


def test_what_cannot_be_tightened_is_reported_once_and_tracing_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / ".appsdk"
    _older_store(folder).close()

    def read_only(path: Any, mode: int, **options: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "chmod", read_only)
    with caplog.at_level(logging.WARNING, logger="appsdk"):
        for _ in range(2):
            appsdk.configure()
            appsdk.observe(_answer)("what is my salary?")
            assert appsdk.flush()
            appsdk.shutdown()
    warned = [r.getMessage() for r in caplog.records if "private" in r.getMessage()]
    assert len(warned) == 1, warned  # once per database and process
    for target in (".appsdk", ".appsdk/traces.db", ".appsdk/traces.db-journal"):
        assert f"{target} (Read-only file system)" in warned[0], warned
    monkeypatch.undo()
    store = TraceStore(folder / "traces.db", create=False)
    assert store.count_spans() == 2
    store.close()


def test_a_shared_folder_keeps_its_mode_and_a_linked_file_its_target(
    tmp_path: Path, umask: int
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o755)
    (project / "README.md").write_text("not appsdk's")
    elsewhere = tmp_path / "elsewhere.db"
    TraceStore(elsewhere).close()
    elsewhere.chmod(0o644)
    (project / "linked.db").symlink_to(elsewhere)
    TraceStore(project / "traces.db").close()
    TraceStore(project / "linked.db").close()
    assert stat.S_IMODE(project.stat().st_mode) == 0o755
    assert stat.S_IMODE((project / "traces.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
