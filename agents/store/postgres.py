"""The shared store: PostgreSQL, for workers on more than one host.

psycopg 3 is the driver: one library with a synchronous API (the feature and rebuild processes,
the commands) and an asynchronous one with a pool (the agents' writer), COPY for bulk writes,
and binary results for the set-based reads (`make bench` compares it with asyncpg).

Bulk writes COPY their rows into a temporary staging table and upsert them from it in one
statement: the precedence rules (`ON CONFLICT … DO UPDATE … WHERE`) are the same SQL as on
SQLite, evaluated by the server for the whole batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from agents.core.errors import StoreError
from agents.store.connection import migrate
from agents.store.dialect import POSTGRES, format_style
from agents.store.tables import Statement, Upsert
from agents.store.writer import Store
from config.settings import DatabaseSettings, redact_url

__all__ = ["PostgresConnection", "PostgresStore", "is_connection_lost"]

log = logging.getLogger("personas.store")

# Any number will do, as long as nothing else on the server takes this advisory lock.
SCHEMA_LOCK_KEY = 7_214_031_911
CONNECT_TIMEOUT_S = 10
# A read on a lost connection is retried on a new one for this long (a restarting server).
RECONNECT_FOR_S = 60.0
# SQLSTATE classes that a new attempt can get past: connection exceptions, a transaction
# rolled back (serialization failure, deadlock), operator intervention (a terminated backend,
# a server shutting down or starting), too many connections.
TRANSIENT_SQLSTATES = ("08", "40", "57P", "53300")
# The store's transactions run their statements back to back, in milliseconds. A session idle
# inside one for this long belongs to a hung host (SIGSTOP, a frozen VM): the server ends it,
# releasing its row locks, so the worker that took over the host's partitions can write the
# same rows instead of waiting for the host to wake.
IDLE_IN_TRANSACTION_TIMEOUT = "10s"
# Per session, for every connection (durability untouched: synchronous_commit stays on). The
# store runs many short statements on several connections at once, from processes that already
# use every core: JIT compiling costs more than it saves on them (≈ 30 ms a query), and a
# parallel plan takes cores from the other processes (and `make bench` measured a shard read
# ≈ 2× faster without one). A shard's read sorts ≈ 200,000 trades by wallet: in memory, not on
# disk, with this much room.
SESSION_SETTINGS = (
    "SET client_min_messages = warning",  # IF NOT EXISTS on the staging tables notices each time
    "SET jit = off",
    "SET max_parallel_workers_per_gather = 0",
    "SET work_mem = '64MB'",
    f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'",
)
#: for the readers: on top of the settings above
READ_ONLY_SESSION = "SET default_transaction_read_only = on"


def is_connection_lost(exc: BaseException) -> bool:
    """A PostgreSQL error that a later attempt, on a new connection if need be, can get past."""
    if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
        return True  # the server ended a hung host's session (IDLE_IN_TRANSACTION_TIMEOUT)
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    # No SQLSTATE: the client lost the server (closed socket, failed connect).
    return state is None or state.startswith(TRANSIENT_SQLSTATES)


@dataclass(frozen=True, slots=True)
class Staging:
    """The statements of one bulk upsert through a temporary staging table."""

    create: str
    copy: str
    upsert: str
    clear: str

    @classmethod
    def of(cls, upsert: Upsert) -> Staging:
        staging, columns = f"staging_{upsert.table}", ", ".join(upsert.columns)
        return cls(
            create=f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {upsert.table})",
            copy=f"COPY {staging} ({columns}) FROM STDIN (FORMAT BINARY)",
            upsert=(
                f"INSERT INTO {upsert.table} ({columns}) SELECT {columns} FROM {staging}\n"
                f"{upsert.on_conflict}"
            ),
            clear=f"TRUNCATE {staging}",
        )


# The column types of a table, in the order of `columns`, for a binary COPY (which must know
# them: measured 1.2–1.7× faster than text by `make bench`'s drivers benchmark, and exact for
# floats without a round trip through text).
_COLUMN_TYPES_SQL = """
SELECT attname, atttypid::int FROM pg_attribute
WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"""


def _column_types(oids: dict[str, int], upsert: Upsert) -> list[int]:
    try:
        return [oids[column] for column in upsert.columns]
    except KeyError as exc:
        raise StoreError(f"table {upsert.table} has no column {exc.args[0]}") from None


def _connect(url: str, read_only: bool) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        for setting in SESSION_SETTINGS:
            conn.execute(setting)
        if read_only:
            conn.execute(READ_ONLY_SESSION)
    except BaseException:
        conn.close()  # a session the server ended as it started is not left to the collector
        raise
    return conn


class PostgresConnection:
    """A synchronous connection with the store's `Connection` API (autocommit between
    transactions). A read outside a transaction that loses its connection is retried on a new
    one; inside a transaction the error goes to the caller, whose retry starts it again."""

    dialect = POSTGRES

    def __init__(self, url: str, read_only: bool) -> None:
        self._url, self._read_only = url, read_only
        self._conn = _connect(url, read_only)
        self._changes = 0
        self._column_types: dict[Upsert, list[int]] = {}
        # Ours, not the server's: a connection that died mid-transaction reports no transaction,
        # and a statement of it must not be retried alone on a new one.
        self._in_transaction = False

    @classmethod
    def open(cls, url: str, read_only: bool = False) -> PostgresConnection:
        try:
            return cls(url, read_only)
        except psycopg.OperationalError as exc:
            # psycopg's first line says what failed; the rest is libpq's advice, indented.
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            reason = first.removeprefix("connection failed: ")
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}"
            ) from exc

    @property
    def total_changes(self) -> int:
        return self._changes

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        query = format_style(sql) if parameters else sql
        deadline = time.monotonic() + RECONNECT_FOR_S
        while True:
            try:
                cursor = self._conn.execute(query, parameters or None, binary=True)
                break
            except psycopg.OperationalError as exc:
                if self._in_transaction or not is_connection_lost(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL connection lost (%s); reconnecting", exc)
                time.sleep(0.5)
                self._reconnect()
        self._count(cursor)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(format_style(sql), rows)
            self._count(cursor)

    def _count(self, cursor: psycopg.Cursor[Any]) -> None:
        if cursor.description is None and cursor.rowcount > 0:  # a write, not a query
            self._changes += cursor.rowcount

    def _reconnect(self) -> None:
        try:
            self._conn.close()
        finally:
            self._conn = _connect(self._url, self._read_only)

    def close(self) -> None:
        self._conn.close()

    def begin(self) -> None:
        if self._conn.broken or self._conn.closed:
            self._reconnect()
        self._conn.execute("BEGIN")
        self._in_transaction = True

    def begin_snapshot(self) -> None:
        if self._conn.broken or self._conn.closed:
            self._reconnect()
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._in_transaction = True  # a lost connection fails the reads: no snapshot on a new one

    def end(self, commit: bool) -> None:
        self._in_transaction = False
        if commit:
            self._conn.execute("COMMIT")
        elif not (self._conn.broken or self._conn.closed):
            self._conn.execute("ROLLBACK")

    def _types(self, upsert: Upsert) -> list[int]:
        types = self._column_types.get(upsert)
        if types is None:
            found = self._conn.execute(_COLUMN_TYPES_SQL, (upsert.table,)).fetchall()
            types = self._column_types[upsert] = _column_types(dict(found), upsert)
        return types

    def bulk_upsert(self, upsert: Upsert, rows: Sequence[tuple[Any, ...]]) -> int:
        staging = Staging.of(upsert)
        types = self._types(upsert)
        with self._conn.cursor() as cursor:
            cursor.execute(staging.create)
            with cursor.copy(staging.copy) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
            cursor.execute(staging.upsert)
            changed = max(cursor.rowcount, 0)
            cursor.execute(staging.clear)
        self._changes += changed
        return changed

    def schema_version(self) -> int:
        if not self.has_table("schema_version"):
            return 0
        row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def set_schema_version(self, version: int) -> None:
        self._conn.execute("DELETE FROM schema_version")
        self._conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def lock_schema(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")

    def has_table(self, name: str) -> bool:
        row = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    for setting in SESSION_SETTINGS:
        await conn.execute(setting)


class PostgresStore(Store):
    """The writer on a pool: each batch takes a connection, runs its transaction, returns it.

    A connection is checked before it is handed out, so one the server dropped is replaced
    instead of failing a batch; one lost during a batch fails it, and the agents' retry runs
    the batch again on a new connection.
    """

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
        self._pool = pool
        # The schema is the same for every connection of the pool: looked up once per table.
        self._column_types: dict[Upsert, list[int]] = {}

    async def _types(self, cursor: psycopg.AsyncCursor[Any], upsert: Upsert) -> list[int]:
        types = self._column_types.get(upsert)
        if types is None:
            await cursor.execute(_COLUMN_TYPES_SQL, (upsert.table,))
            found = await cursor.fetchall()
            types = self._column_types[upsert] = _column_types(dict(found), upsert)
        return types

    @classmethod
    async def open(cls, database: DatabaseSettings) -> PostgresStore:
        """Migrate the database, then open the pool (`database.pool_min` … `pool_max`)."""
        with closing(PostgresConnection.open(database.url)) as schema_conn:
            migrate(schema_conn)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            database.url,
            min_size=database.pool_min,
            max_size=database.pool_max,
            timeout=database.pool_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            name="personas-writer",
            open=False,
        )
        await pool.open(wait=True, timeout=database.pool_timeout_s)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def run_batch(self, statements: Sequence[Statement]) -> int:
        changed = 0
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for statement, rows in statements:
                if not rows:
                    continue
                if isinstance(statement, Upsert):
                    staging = Staging.of(statement)
                    types = await self._types(cursor, statement)
                    await cursor.execute(staging.create)
                    async with cursor.copy(staging.copy) as copy:
                        copy.set_types(types)
                        for row in rows:
                            await copy.write_row(row)
                    await cursor.execute(staging.upsert)
                    changed += max(cursor.rowcount, 0)
                    await cursor.execute(staging.clear)
                else:
                    await cursor.executemany(format_style(statement), rows)
                    changed += max(cursor.rowcount, 0)
        return changed
