"""One way to open appsdk's SQLite files: WAL, a busy timeout, usable from any thread.

The trace store, the export spool and the feedback outbox are each shared by several
processes; WAL lets readers and one writer work at once, and the busy timeout makes a second
writer wait instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from appsdk.errors import StoreError

__all__ = ["open_database"]


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
