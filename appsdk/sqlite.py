"""One way to open appsdk's SQLite files: private, WAL, a busy timeout, usable from any thread.

The trace store, the export spool and the feedback outbox are each shared by several
processes; WAL lets readers and one writer work at once, and the busy timeout makes a second
writer wait instead of failing.

They hold prompts and answers, so they are private at rest, whatever the process umask: the
folder is 0700 and every file 0600, the database and its ``-wal``, ``-shm`` and ``-journal``
siblings, also when an older appsdk left them readable. appsdk creates the database file 0600
itself before SQLite opens it; SQLite gives the siblings it creates later the database file's
permissions (``tests/test_at_rest.py`` checks both).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from appsdk.errors import StoreError

__all__ = ["add_columns", "keep_private", "open_database"]

_log = logging.getLogger("appsdk")

_SIBLINGS = ("-wal", "-shm", "-journal")
# What a folder may hold and still be appsdk's own: databases and their siblings.
_DATABASES = (".db", ".sqlite", ".sqlite3")
_FOLDER_MODE = 0o700
_FILE_MODE = 0o600

_warned: set[str] = set()
_warned_lock = threading.Lock()


def open_database(
    path: Path, schema: str, *, what: str, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
) -> sqlite3.Connection:
    """Open (creating folders and tables) the database at ``path``, private to this user.

    Raises:
        StoreError: the file cannot be created or opened; the message names ``what`` it is.
    """
    try:
        path.parent.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
        keep_private(path, create=True)
        connection = sqlite3.connect(
            path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the {what} at {path}: {exc}") from exc
    return connection


def keep_private(path: Path, *, create: bool = False) -> None:
    """Take every access but the owner's away from the database at ``path`` and its folder.

    Only takes away, never grants: a 0755 folder becomes 0700, a 0644 file 0600, a file its
    owner made read-only stays so. The folder is changed only when it holds nothing but
    databases (a project folder or ``/tmp`` holding a store keeps its mode; the files are
    private anyway), and a symbolic link is never followed. Never raises: what cannot be
    changed (another user's, a read-only file system) is logged once, at warning level.

    Args:
        path: the database file.
        create: create the database file 0600 if it does not exist yet (its folder must).
    """
    if sys.platform == "win32":  # no POSIX modes; the user's profile folder is private
        return
    problems: dict[Path, str] = {}
    if create:
        _create(path, problems)
    folder = path.parent
    if _only_databases(folder, path.name, problems):
        _tighten(folder, _FOLDER_MODE, stat.S_ISDIR, problems)
    for name in (path.name, *(path.name + suffix for suffix in _SIBLINGS)):
        _tighten(folder / name, _FILE_MODE, stat.S_ISREG, problems)
    if problems:
        _warn_once(path, problems)


def _create(path: Path, problems: dict[Path, str]) -> None:
    """Create the empty database file 0600: SQLite would create it 0644 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        # Only a file this call creates is opened: closing a descriptor of a database file
        # drops the POSIX locks this process's connections hold on it.
        fd = os.open(path, flags, _FILE_MODE)
    except OSError:
        return  # it exists (it is tightened next), or SQLite fails to create it and says why
    try:
        os.fchmod(fd, _FILE_MODE)  # the umask may have taken the owner's bits too
    except OSError as exc:
        problems[path] = _reason(exc)
    finally:
        os.close(fd)


def _only_databases(folder: Path, own: str, problems: dict[Path, str]) -> bool:
    """Whether ``folder`` holds nothing but databases and their siblings: appsdk's folder."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                for suffix in _SIBLINGS:
                    name = name.removesuffix(suffix)
                if not entry.is_file(follow_symlinks=False):
                    return False
                if name != own and not name.endswith(_DATABASES):
                    return False
    except OSError as exc:
        problems[folder] = _reason(exc)
        return False
    return True


def _tighten(
    target: Path, allowed: int, is_kind: Callable[[int], bool], problems: dict[Path, str]
) -> None:
    """Clear the mode bits of ``target`` outside ``allowed``, if it is what it should be."""
    try:
        status = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        problems[target] = _reason(exc)
        return
    mode = stat.S_IMODE(status.st_mode)
    if not is_kind(status.st_mode) or mode & ~allowed == 0:
        return  # a symbolic link (its target is not ours to change), or private already
    if mode & stat.S_ISVTX:
        return  # a folder every user shares (/tmp): not appsdk's to close
    if status.st_uid != os.geteuid():
        problems[target] = "it belongs to another user"
        return
    try:
        # lstat above, chmod here: a link swapped in between is followed; only the folder's
        # owner can do that, and the folder is being made theirs alone.
        os.chmod(target, mode & allowed)
    except OSError as exc:
        problems[target] = _reason(exc)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _warn_once(path: Path, problems: dict[Path, str]) -> None:
    """One warning per database and process, naming what stays readable and why."""
    key = os.path.abspath(path)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    _log.warning(
        "appsdk cannot make its files private to this user; other local users may read %s",
        "; ".join(f"{target} ({reason})" for target, reason in problems.items()),
    )


def add_columns(connection: sqlite3.Connection, table: str, columns: Iterable[str]) -> None:
    """Add what an older appsdk's file lacks; once, even when processes open it together."""
    wanted = list(columns)

    def missing() -> list[str]:
        have = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        return [c for c in wanted if c.split()[0] not in have]

    if not missing():
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        for column in missing():
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
