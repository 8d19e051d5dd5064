"""The rebuild's shard read on SQLite as Arrow columns (ADBC): no Python object per value.

The sqlite3 module makes a Python object of every value it returns: for a shard's ≈ 200,000
trades, seven a row, that and turning them into columns were two thirds of a shard's read
(issue 14's profile). The ADBC SQLite driver returns a query's result as Arrow arrays, which
become the kernel's numpy columns as they are; Python objects are made only for the rows that
need a Fill. Its own connection, read-only, runs the row path's queries (`agents.store.
checkpoints`) in one snapshot, so the checkpoints and the trades are of one state there too.

ADBC's SQLite is a copy of SQLite of its own, beside the one of the sqlite3 module. Two copies must
never have the same file open in one process: closing the file in one drops the locks the other
holds on it (SQLite's "How To Corrupt", §2.2.1). Only the rebuild's reader processes read this
way, and they open no sqlite3 connection (`agents.compute.processes`).

Each column's type comes from its first values; every column read here is NOT NULL in the schema
except a checkpoint's trade times, which are set for any wallet with a trade. A value of another
type fails the read, and the shard's fallback reads it again on the row path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import orjson

from agents.store.tables import CATEGORIES_SQL, UNKNOWN_CATEGORY

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from agents.core.columns import FillColumns, Run

# pyarrow, ADBC and numpy are imported where they are used: only the rebuild's reader processes
# read this way, and every other process (a worker, a feature process, the CLI) skips ≈ 0.3 s of
# imports at its start.

__all__ = ["ArrowFile", "ArrowSnapshot", "arrow_snapshot"]

# The row path's read (`checkpoints._fills_since_sql`), each row naming its wallet by its place
# in the parameter's array rather than by the wallet's string.
_TRADES_SINCE_SQL = """
SELECT bounds.key, t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp
FROM json_each(?) AS bounds
JOIN trades AS t ON t.proxy_wallet = bounds.value ->> '$.w'
    AND t.timestamp BETWEEN bounds.value ->> '$.s' AND ?"""


@dataclass(frozen=True)
class ArrowFile:
    """A SQLite file read through ADBC, with the busy timeout of the store's connections."""

    path: Path
    busy_timeout_ms: int


class ArrowSnapshot:
    """Queries on one read snapshot of the database, their results as Arrow tables."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def rows(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A result as Python tuples (column by column: the DB-API's rows are slower)."""
        return list(zip(*self.table(sql, parameters).to_pydict().values(), strict=True))

    def table(self, sql: str, parameters: Sequence[Any] = ()) -> pa.Table:
        """A result as one Arrow table."""
        self._cursor.execute(sql, tuple(parameters))
        return self._cursor.fetch_arrow_table()

    def columns_since(
        self, since: Sequence[tuple[str, int]], as_of: int
    ) -> tuple[FillColumns, list[Run]]:
        """Each wallet's trades from its own `since` to `as_of`, as columns with each wallet's run
        of rows: what `checkpoints.columns_since` reads."""
        category = dict(zip(*self.table(CATEGORIES_SQL).to_pydict().values(), strict=True))
        bounds = orjson.dumps([{"w": wallet, "s": start} for wallet, start in since]).decode()
        trades = self.table(_TRADES_SINCE_SQL, (bounds, as_of))
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
    """A column of strings made Python strings one at a time: a shard needs the trade ids of
    only the rows it makes Fills of (its trades since the checkpoints, a few ties)."""

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


@contextmanager
def arrow_snapshot(file: ArrowFile) -> Iterator[ArrowSnapshot]:
    """A read-only ADBC connection to `file`, in one read transaction."""
    import adbc_driver_sqlite.dbapi

    uri = file.path.resolve().as_uri() + "?mode=ro"
    connection = adbc_driver_sqlite.dbapi.connect(uri, autocommit=True)
    with closing(connection), closing(connection.cursor()) as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {int(file.busy_timeout_ms)}")
        cursor.execute("BEGIN DEFERRED")  # the first read fixes the snapshot (WAL)
        try:
            yield ArrowSnapshot(cursor)
        finally:
            cursor.execute("ROLLBACK")
