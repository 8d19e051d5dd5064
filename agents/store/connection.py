"""A synchronous connection to either store, and what every caller does with one: open it,
run a transaction, migrate the schema.

`connect` and `open_reader` take the database setting as it is configured: a SQLite file path,
or a `postgresql://` URL. Both kinds of connection answer the subset of sqlite3's API that the
project uses (`execute`, `executemany`, `total_changes`, `close`), take SQLite-style `?` SQL, and
add what differs between the two (`bulk_upsert`, the schema version, the schema lock).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agents.core.errors import StoreError
from agents.store.dialect import Dialect
from agents.store.schema import SCHEMA_VERSION, migration_statements
from config.settings import POSTGRES_SCHEMES

if TYPE_CHECKING:
    from agents.store.tables import Upsert

__all__ = [
    "Connection",
    "Cursor",
    "connect",
    "is_postgres",
    "migrate",
    "open_reader",
    "snapshot",
    "transaction",
]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the project asks of a database connection, on SQLite and PostgreSQL alike."""

    dialect: Dialect

    @property
    def total_changes(self) -> int: ...
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
    def close(self) -> None: ...
    def begin(self) -> None:
        """Start a transaction that holds the write lock (SQLite) or a plain one."""

    def begin_snapshot(self) -> None:
        """Start a read-only transaction whose reads all see one state of the store."""

    def end(self, commit: bool) -> None: ...
    def bulk_upsert(self, upsert: Upsert, rows: Sequence[tuple[Any, ...]]) -> int:
        """Write `rows` through `upsert` inside the caller's transaction; return rows changed."""

    def schema_version(self) -> int: ...
    def set_schema_version(self, version: int) -> None: ...
    def lock_schema(self) -> None:
        """Hold the schema for the rest of the transaction (one migrating worker at a time)."""

    def has_table(self, name: str) -> bool: ...


def is_postgres(location: Path | str) -> bool:
    return str(location).startswith(POSTGRES_SCHEMES)


def connect(location: Path | str, busy_timeout_ms: int = 10_000) -> Connection:
    """A read-write connection to the store at `location` (a SQLite path or a PostgreSQL URL)."""
    if is_postgres(location):
        from agents.store.postgres import PostgresConnection

        return PostgresConnection.open(str(location))
    from agents.store.sqlite import connect_sqlite

    return connect_sqlite(location, busy_timeout_ms)


def open_reader(location: Path | str, busy_timeout_ms: int = 10_000) -> Connection:
    """A read-only connection: it never blocks the writer (SQLite WAL, PostgreSQL MVCC)."""
    if is_postgres(location):
        from agents.store.postgres import PostgresConnection

        return PostgresConnection.open(str(location), read_only=True)
    from agents.store.sqlite import open_sqlite_reader

    return open_sqlite_reader(location, busy_timeout_ms)


class transaction:
    """One transaction on `conn`, committed on success and rolled back on any error."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.begin()
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.end(commit=exc_type is None)


class snapshot(transaction):
    """Reads on `conn` that see one state of the store, whatever is written meanwhile: a
    checkpoint and the trades since it must agree (a late trade stored between the two reads
    would be in neither the checkpoint nor the trades read)."""

    def __enter__(self) -> Connection:
        self.conn.begin_snapshot()
        return self.conn


def migrate(conn: Connection) -> int:
    """Apply pending migrations, each in a transaction of its own; return the schema version.

    Workers on several hosts may start together: the schema lock makes one of them migrate and
    the others find the work done.
    """
    while True:
        with transaction(conn):
            conn.lock_schema()
            current = conn.schema_version()
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this program's "
                    f"{SCHEMA_VERSION}"
                )
            if current == SCHEMA_VERSION:
                return SCHEMA_VERSION
            for statement in migration_statements(current, conn.dialect):
                conn.execute(statement)
            conn.set_schema_version(current + 1)
