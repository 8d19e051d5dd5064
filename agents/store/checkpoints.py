"""Per-wallet checkpoints (`wallet_checkpoints`, issue 14): their rows, and the reads they allow.

A checkpoint is used only while it is valid: its `total_trades` must still be the number of the
wallet's stored trades at or before its `as_of`. A trade that arrives late (timestamp before the
checkpoint, stored after it, even while the rebuild that wrote it was running) changes that count,
and the wallet is then read and computed in full; its next rebuild writes a new checkpoint. The
count is answered from the (proxy_wallet, timestamp) index alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from agents.core.checkpoint import BEFORE_ANY_TRADE, Checkpoint
from agents.core.features import Fill
from agents.store.arrow import ArrowStore
from agents.store.connection import Connection, snapshot
from agents.store.dialect import Dialect
from agents.store.tables import CATEGORIES_SQL, Upsert, fill_columns, wallet_fills

if TYPE_CHECKING:
    from agents.core.columns import FillColumns, Run

__all__ = [
    "CHECKPOINTS",
    "checkpoint_from_row",
    "checkpoint_row",
    "checkpointed_columns",
    "checkpointed_fills",
    "columns_since",
    "fills_since",
    "valid_checkpoints",
]

T = TypeVar("T")

_COLUMNS = (
    "proxy_wallet", "as_of", "total_trades", "first_trade_at", "last_trade_at", "buy_cost",
    "realized_pnl", "open_lots", "computed_at",
)  # fmt: skip

# A backfill of older days never replaces a newer checkpoint: the newest saves the most reading.
CHECKPOINTS = Upsert(
    "wallet_checkpoints",
    _COLUMNS,
    f"""ON CONFLICT (proxy_wallet) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in _COLUMNS[1:])}
WHERE excluded.as_of >= wallet_checkpoints.as_of""",
)


def checkpoint_row(wallet: str, checkpoint: Checkpoint, computed_at: float) -> tuple[Any, ...]:
    """A `wallet_checkpoints` row (in `CHECKPOINTS.columns` order)."""
    return (
        wallet, checkpoint.as_of, checkpoint.total_trades, checkpoint.first_trade_at,
        checkpoint.last_trade_at, checkpoint.buy_cost, checkpoint.realized_pnl,
        orjson.dumps(checkpoint.open_lots).decode(), computed_at,
    )  # fmt: skip


def checkpoint_from_row(row: Sequence[Any]) -> Checkpoint:
    """The Checkpoint of a row from `_CHECKPOINTS_SQL` (its columns 1–7)."""
    _, as_of, total, first, last, buy_cost, realized, lots = row[:8]
    # The lots as written (`checkpoint_row`): orjson keeps a float a float and an int an int.
    return Checkpoint(
        as_of, total, first, last, float(buy_cost), float(realized),
        tuple((market, tuple(map(tuple, lots_of))) for market, lots_of in orjson.loads(lots)),
    )  # fmt: skip


def _checkpoints_sql(dialect: Dialect) -> str:
    return f"""
SELECT c.proxy_wallet, c.as_of, c.total_trades, c.first_trade_at, c.last_trade_at, c.buy_cost,
       c.realized_pnl, c.open_lots,
       (SELECT count(*) FROM trades AS t
        WHERE t.proxy_wallet = c.proxy_wallet AND t.timestamp <= c.as_of) AS stored
FROM wallet_checkpoints AS c
WHERE c.proxy_wallet {dialect.in_wallet_set} AND c.as_of <= ?"""


def valid_checkpoints(
    conn: Connection, wallets: Sequence[str], as_of: int
) -> dict[str, Checkpoint]:
    """The valid checkpoints of `wallets` taken at or before `as_of`, by wallet (one query)."""
    rows = conn.execute(
        _checkpoints_sql(conn.dialect), (conn.dialect.wallet_set(list(wallets)), as_of)
    )
    return _valid(rows)


def _valid(rows: Iterable[Sequence[Any]]) -> dict[str, Checkpoint]:
    return {row[0]: checkpoint_from_row(row) for row in rows if row[8] == row[2]}


def _fills_since_sql(conn: Connection) -> str:
    return f"""
SELECT t.proxy_wallet, t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp
FROM {conn.dialect.wallet_bounds}
JOIN trades AS t ON t.proxy_wallet = bounds.w AND t.timestamp BETWEEN bounds.s AND ?"""


def _rows_since(
    conn: Connection, since: Iterable[tuple[str, int]], as_of: int
) -> tuple[list[Any], dict[str, str]]:
    category = dict(conn.execute(CATEGORIES_SQL))
    bounds = orjson.dumps([{"w": wallet, "s": start} for wallet, start in since]).decode()
    return conn.execute(_fills_since_sql(conn), (bounds, as_of)).fetchall(), category


def fills_since(
    conn: Connection, since: Iterable[tuple[str, int]], as_of: int
) -> dict[str, list[Fill]]:
    """Each wallet's trades from its own `since` to `as_of`, from one query; wallets without
    any are left out. Each wallet's list is in no particular order (the core sorts it)."""
    out: dict[str, list[Fill]] = {}
    # A wallet's rows come together (one index range each); extending keeps it right if not.
    for wallet, fills in wallet_fills(*_rows_since(conn, since, as_of)):
        out.setdefault(wallet, []).extend(fills)
    return out


def columns_since(
    conn: Connection, since: Iterable[tuple[str, int]], as_of: int
) -> tuple[FillColumns, list[Run]]:
    """The trades of `fills_since` as columns, with each wallet's runs of rows."""
    return fill_columns(*_rows_since(conn, since, as_of))


def _checkpointed(
    conn: Connection,
    needs: Mapping[str, tuple[int, int]],
    until: int,
    read: Callable[[Connection, list[tuple[str, int]], int], T],
) -> tuple[dict[str, Checkpoint], T]:
    with snapshot(conn):  # the checkpoints' validity and the trades since, of one state
        stored = valid_checkpoints(conn, sorted(needs), _latest(needs))
        checkpoints, since = _reads_since(needs, stored)
        return checkpoints, read(conn, since, until)


def _latest(needs: Mapping[str, tuple[int, int]]) -> int:
    return max(as_of for as_of, _ in needs.values())


def _reads_since(
    needs: Mapping[str, tuple[int, int]], stored: Mapping[str, Checkpoint]
) -> tuple[dict[str, Checkpoint], list[tuple[str, int]]]:
    """The checkpoints each wallet may start from (taken at or before its first as_of), and the
    time each wallet's trades are read from."""
    checkpoints = {w: cp for w, cp in stored.items() if cp.as_of <= needs[w][0]}
    since = [
        (wallet, min(start, cp.as_of + 1) if cp is not None else BEFORE_ANY_TRADE)
        for wallet, (_, start) in needs.items()
        for cp in (checkpoints.get(wallet),)
    ]
    return checkpoints, since


def checkpointed_fills(
    conn: Connection, needs: Mapping[str, tuple[int, int]], until: int
) -> tuple[dict[str, Checkpoint], dict[str, list[Fill]]]:
    """What the kernel needs of each wallet, given its (first as_of, longest window's start):
    its valid checkpoint taken at or before that as_of, if any, and its trades up to `until`
    from the earlier of the window's start and the checkpoint on, or its whole history when it
    has none. Two queries, whatever the number of wallets (the rebuild's shards and the
    on-demand jobs alike); wallets without trades are left out of the fills."""
    if not needs:
        return {}, {}
    return _checkpointed(conn, needs, until, fills_since)


def checkpointed_columns(
    source: Connection | ArrowStore, needs: Mapping[str, tuple[int, int]], until: int
) -> tuple[dict[str, Checkpoint], tuple[FillColumns, list[Run]]]:
    """`checkpointed_fills` with the trades as columns (the rebuild's shards), read on a
    connection, or as Arrow columns through ADBC (`agents.store.arrow`): the same rows."""
    if not needs:
        return {}, fill_columns([], {})
    if not isinstance(source, ArrowStore):
        return _checkpointed(source, needs, until, columns_since)
    with source.snapshot() as snapshot_read:
        dialect = snapshot_read.dialect
        wallets = dialect.wallet_set(sorted(needs))
        rows = snapshot_read.rows(_checkpoints_sql(dialect), (wallets, _latest(needs)))
        checkpoints, since = _reads_since(needs, _valid(rows))
        return checkpoints, snapshot_read.columns_since(since, until)
