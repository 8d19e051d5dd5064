"""The embedded store: SQLite in WAL mode, one writer, readers that never block it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.store.connection import migrate
from agents.store.dialect import SQLITE
from agents.store.tables import Statement, Upsert
from agents.store.writer import Store

__all__ = ["SqliteConnection", "SqliteStore", "connect_sqlite", "open_sqlite_reader"]

# Per reader: a set-based read sorts its rows; a bigger page cache keeps that off temp files.
READ_CACHE_KIB = 32_768


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, with what the store's `Connection` adds (autocommit mode)."""

    dialect = SQLITE

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so a transaction never fails half-way on it.
        self.execute("BEGIN IMMEDIATE")

    def begin_snapshot(self) -> None:
        # DEFERRED: no lock taken; in WAL mode the first read fixes the snapshot until the end.
        self.execute("BEGIN DEFERRED")

    def end(self, commit: bool) -> None:
        self.execute("COMMIT" if commit else "ROLLBACK")

    def bulk_upsert(self, upsert: Upsert, rows: Sequence[tuple[Any, ...]]) -> int:
        before = self.total_changes
        self.executemany(upsert.sql, rows)
        return self.total_changes - before

    def schema_version(self) -> int:
        version: int = self.execute("PRAGMA user_version").fetchone()[0]
        return version

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def lock_schema(self) -> None:
        """BEGIN IMMEDIATE already holds the database's one write lock."""

    def has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.execute(query, (name,)).fetchone() is not None


def connect_sqlite(path: Path | str, busy_timeout_ms: int = 10_000) -> SqliteConnection:
    """Open a connection in WAL mode with a busy timeout; autocommit off for explicit batches."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, factory=SqliteConnection
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the tail).
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def open_sqlite_reader(path: Path | str, busy_timeout_ms: int = 10_000) -> SqliteConnection:
    """A read-only connection (WAL readers never block the writer, nor each other)."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(
        uri,
        uri=True,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        factory=SqliteConnection,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
    return conn


class SqliteStore(Store):
    """The writer, on one connection (the feature processes read on connections of their own).

    The connection lives in a thread of its own, and each batch is one call into it: BEGIN, the
    statements and COMMIT in one hand-off, not one per statement (each hand-off is a thread
    switch and a wake-up of the event loop, and the agents write many small batches).
    """

    def __init__(self, writer: SqliteConnection, thread: ThreadPoolExecutor) -> None:
        self._writer = writer
        # One thread: SQLite has one writer anyway, and agents' transactions never interleave.
        self._thread = thread

    @classmethod
    async def open(cls, path: Path | str, busy_timeout_ms: int) -> SqliteStore:
        """Migrate the database, then open the writer."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(thread, _open_writer, path, busy_timeout_ms)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.close)
        self._thread.shutdown(wait=True)

    async def run_batch(self, statements: Sequence[Statement]) -> int:
        """Run store writes in one transaction; return the rows changed."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, _transaction, self._writer, statements)


def _open_writer(path: Path | str, busy_timeout_ms: int) -> SqliteConnection:
    with closing(connect_sqlite(path, busy_timeout_ms)) as schema_conn:
        migrate(schema_conn)
    # In the writer's thread, which is the only one that uses it.
    return connect_sqlite(path, busy_timeout_ms)


def _transaction(conn: SqliteConnection, statements: Sequence[Statement]) -> int:
    conn.begin()
    try:
        before = conn.total_changes
        for statement, rows in statements:
            if rows:
                sql = statement.sql if isinstance(statement, Upsert) else statement
                conn.executemany(sql, rows)
        changed = conn.total_changes - before
        conn.end(commit=True)
    except BaseException:
        conn.end(commit=False)
        raise
    return changed
