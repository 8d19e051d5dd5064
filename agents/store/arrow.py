"""The rebuild's shard read as Arrow columns (ADBC), on either store: no Python object per value.

The sqlite3 module and psycopg make a Python object of every value they return: for a shard's
≈ 200,000 trades, seven a row, that and turning them into columns were two thirds of a shard's read
on SQLite (issue 14's profile). ADBC's drivers return a query's result as Arrow arrays, which
become the kernel's numpy columns as they are; Python objects are made only for the rows that
need a Fill. The row path's queries (`agents.store.checkpoints`) run in one read-only snapshot, so
the checkpoints and the trades are of one state here too.

On SQLite, ADBC's SQLite is a copy of SQLite of its own, beside the one of the sqlite3 module. Two
copies must never have the same file open in one process: closing the file in one drops the locks
the other holds on it (SQLite's "How To Corrupt", §2.2.1). Only the rebuild's reader processes read
this way, and they open no sqlite3 connection (`agents.compute.processes`). Each column's type
comes from its first values; every column read here is NOT NULL in the schema except a
checkpoint's trade times, which are set for any wallet with a trade. A value of another type fails
the read, and the shard's fallback reads it again on the row path.

On PostgreSQL, the columns come typed from the server, in its binary COPY format. Connecting
costs ≈ 45 ms (the driver reads the server's types), so a reader process keeps its connection and
opens a new one only after a read failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import orjson

from agents.store.connection import is_postgres
from agents.store.dialect import POSTGRES, SQLITE, Dialect
from agents.store.tables import CATEGORIES_SQL, UNKNOWN_CATEGORY

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from agents.core.columns import FillColumns, Run

# pyarrow, ADBC and numpy are imported where they are used: only the rebuild's reader processes
# read this way, and every other process (a worker, a feature process, the CLI) skips ≈ 0.3 s of
# imports at its start.

__all__ = ["ArrowSnapshot", "ArrowStore"]

# The row path's read (`checkpoints._fills_since_sql`), each row naming its wallet by its place
# in the parameter's array (from 0) rather than by the wallet's string.
_SQLITE_TRADES_SINCE_SQL = """
SELECT bounds.key, t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp
FROM json_each(?) AS bounds
JOIN trades AS t ON t.proxy_wallet = bounds.value ->> '$.w'
    AND t.timestamp BETWEEN bounds.value ->> '$.s' AND ?"""
_POSTGRES_TRADES_SINCE_SQL = """
SELECT bounds.n - 1, t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp
FROM ROWS FROM (jsonb_to_recordset(?::jsonb) AS (w TEXT, s BIGINT)) WITH ORDINALITY
    AS bounds(w, s, n)
JOIN trades AS t ON t.proxy_wallet = bounds.w AND t.timestamp BETWEEN bounds.s AND ?"""

#: ADBC binds scalars only: on PostgreSQL the wallet set goes as JSON text, as on SQLite.
ADBC_POSTGRES = dataclasses.replace(
    POSTGRES,
    wallet_set=SQLITE.wallet_set,
    in_wallet_set="IN (SELECT jsonb_array_elements_text(?::jsonb))",
)


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`, …"""
    first, *rest = sql.split("?")
    return first + "".join(f"${n}{part}" for n, part in enumerate(rest, start=1))


class ArrowSnapshot:
    """Queries on one read snapshot of the database, their results as Arrow tables. `dialect`
    is the SQL the queries are written in (`?` placeholders, as everywhere in the store)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect
        self._on_postgres = dialect.name == POSTGRES.name

    def rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A result as Python tuples (column by column: the DB-API's rows are slower)."""
        columns = self.table(sql, parameters).columns  # by place: two may share a name
        return list(zip(*(column.to_pylist() for column in columns), strict=True))

    def table(self, sql: str, parameters: Sequence[Any] = ()) -> pa.Table:
        """A result as one Arrow table."""
        if self._on_postgres:
            sql = _numbered(sql)
        self._cursor.execute(sql, tuple(parameters) or None)
        return self._cursor.fetch_arrow_table()

    def columns_since(
        self, since: Sequence[tuple[str, int]], as_of: int
    ) -> tuple[FillColumns, list[Run]]:
        """Each wallet's trades from its own `since` to `as_of`, as columns with each wallet's run
        of rows: what `checkpoints.columns_since` reads."""
        category = dict(self.rows(CATEGORIES_SQL, ()))
        bounds = orjson.dumps([{"w": wallet, "s": start} for wallet, start in since]).decode()
        sql = _POSTGRES_TRADES_SINCE_SQL if self._on_postgres else _SQLITE_TRADES_SINCE_SQL
        trades = self.table(sql, (bounds, as_of))
        return _columns(trades, category), _runs(trades.column(0), [w for w, _ in since])


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A string column as codes into its distinct values (in order of first appearance)."""
    import numpy as np
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).combine_chunks()
    names: list[str] = encoded.dictionary.to_pylist()
    return encoded.indices.to_numpy().astype(np.int64), names


def _columns(trades: pa.Table, category: dict[str, str]) -> FillColumns:
    from agents.core.columns import FillColumns, encode

    markets, market_names = _codes(trades.column(2))
    sides, side_names = _codes(trades.column(3))
    categories, category_names = encode(category.get(m, UNKNOWN_CATEGORY) for m in market_names)
    return FillColumns(
        _Strings(trades.column(1)),
        markets,
        market_names,
        sides,
        side_names,
        trades.column(4).to_numpy(),
        trades.column(5).to_numpy(),
        trades.column(6).to_numpy(),
        categories[markets],
        category_names,
    )


class _Strings(Sequence[str]):
    """A column of strings made Python strings only when asked for, one or a slice at a time: a
    shard needs the trade ids of only the rows it makes Fills of (its trades since the
    checkpoints, a few ties)."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._array = column.combine_chunks()

    def __len__(self) -> int:
        return len(self._array)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self._array[index].to_pylist()  # type: ignore[no-any-return]
        return self._array[index].as_py()  # type: ignore[no-any-return]


def _runs(keys: pa.ChunkedArray, wallets: Sequence[str]) -> list[Run]:
    """The runs of rows of one wallet, from each row's place of its wallet in `wallets`."""
    import numpy as np

    places = keys.to_numpy()
    if not len(places):
        return []
    starts = [0, *(np.flatnonzero(places[1:] != places[:-1]) + 1).tolist()]
    ends = [*starts[1:], len(places)]
    return [
        (wallets[place], start, end)
        for place, start, end in zip(places[starts].tolist(), starts, ends, strict=True)
    ]


class ArrowStore:
    """A store read through ADBC: a SQLite file, opened for each snapshot with the store's busy
    timeout, or a PostgreSQL server, on one connection kept between snapshots."""

    def __init__(self, location: str, busy_timeout_ms: int) -> None:
        self.location = location
        self.busy_timeout_ms = busy_timeout_ms
        self._server: Any = None  # the PostgreSQL connection, once opened

    @contextmanager
    def snapshot(self) -> Iterator[ArrowSnapshot]:
        """One read-only snapshot of the store."""
        if is_postgres(self.location):
            with self._postgres_snapshot() as snapshot:
                yield snapshot
        else:
            with self._sqlite_snapshot() as snapshot:
                yield snapshot

    @contextmanager
    def _sqlite_snapshot(self) -> Iterator[ArrowSnapshot]:
        import adbc_driver_sqlite.dbapi

        uri = Path(self.location).resolve().as_uri() + "?mode=ro"
        connection = adbc_driver_sqlite.dbapi.connect(uri, autocommit=True)
        with closing(connection), closing(connection.cursor()) as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            cursor.execute("BEGIN DEFERRED")  # the first read fixes the snapshot (WAL)
            try:
                yield ArrowSnapshot(cursor, SQLITE)
            finally:
                cursor.execute("ROLLBACK")

    @contextmanager
    def _postgres_snapshot(self) -> Iterator[ArrowSnapshot]:
        if self._server is None:
            self._server = _connect_postgres(self.location)
        cursor = self._server.cursor()
        try:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield ArrowSnapshot(cursor, ADBC_POSTGRES)
            cursor.execute("ROLLBACK")
        except BaseException:
            # Lost, or in a failed transaction: the next snapshot opens a new connection.
            _close_quietly(cursor)
            self.close()
            raise
        cursor.close()

    def close(self) -> None:
        """Close the PostgreSQL connection, if one is open."""
        server, self._server = self._server, None
        if server is not None:
            _close_quietly(server)


def _close_quietly(handle: Any) -> None:
    """Close an ADBC cursor or connection that may be broken already: nothing is left to release
    on this side then."""
    with suppress(Exception):
        handle.close()


def _connect_postgres(url: str) -> Any:
    import adbc_driver_postgresql.dbapi

    from agents.store.postgres import READ_ONLY_SESSION, SESSION_SETTINGS

    connection = adbc_driver_postgresql.dbapi.connect(url, autocommit=True)
    try:
        with closing(connection.cursor()) as cursor:
            for setting in (*SESSION_SETTINGS, READ_ONLY_SESSION):
                cursor.execute(setting)
    except BaseException:
        connection.close()
        raise
    return connection
