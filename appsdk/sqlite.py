"""One way to open appsdk's SQLite files: WAL, a busy timeout, usable from any thread.

The trace store, the export spool and the feedback outbox are each shared by several
processes; WAL lets readers and one writer work at once, and the busy timeout makes a second
writer wait instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from appsdk.errors import StoreError

__all__ = ["add_columns", "open_database"]


def open_database(
    path: Path, schema: str, *, what: str, synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
) -> sqlite3.Connection:
    """Open (creating folders and tables) the database at ``path``.

    Raises:
        StoreError: the file cannot be created or opened; the message names ``what`` it is.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=10.0, check_same_thread=False, isolation_level=None
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.executescript(schema)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open the {what} at {path}: {exc}") from exc
    return connection


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
