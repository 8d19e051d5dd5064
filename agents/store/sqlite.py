"""The embedded store: SQLite in WAL mode, one writer, readers that never block it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite

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
    """The writer, on one connection (the feature processes read on connections of their own)."""

    def __init__(self, writer: aiosqlite.Connection) -> None:
        self._writer = writer
        # Agents share one writer connection; SQLite has one writer anyway, and a lock here
        # keeps two agents' transactions from interleaving on it.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, busy_timeout_ms: int) -> SqliteStore:
        """Migrate the database, then open the writer."""
        with closing(connect_sqlite(path, busy_timeout_ms)) as schema_conn:
            migrate(schema_conn)
        conn = await aiosqlite.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA synchronous = NORMAL")
        return cls(conn)

    async def close(self) -> None:
        await self._writer.close()

    async def run_batch(self, statements: Sequence[Statement]) -> int:
        """Run store writes in one transaction; return the rows changed."""
        conn = self._writer
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                for statement, rows in statements:
                    if rows:
                        sql = statement.sql if isinstance(statement, Upsert) else statement
                        await conn.executemany(sql, rows)
                changed = conn.total_changes - before
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        return changed
