"""The store's reads and idempotent, precedence-aware writes (SPEC §6), the same on both stores.

Writes are batched (one transaction per batch) and every one of them is an upsert, so a
redelivered message rewrites the same row instead of adding one. Batch beats on-demand inside
the SQL: an on_demand row never replaces a batch row for the same key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from agents.core.features import Fill
from agents.core.records import FeatureSet, Market, Trade
from agents.core.rules import Classification
from agents.store.connection import Connection, transaction
from agents.store.schema import FEATURE_ROW_KEYS

if TYPE_CHECKING:
    from agents.core.columns import FillColumns, Run

__all__ = [
    "CLASSIFICATIONS",
    "FEATURES",
    "TRADES",
    "UPSERT_FEATURES_SQL",
    "Classified",
    "Statement",
    "Upsert",
    "classified_statements",
    "feature_row",
    "fills_by_wallet",
    "fills_for_wallet",
    "insert_markets",
    "insert_trade_rows",
    "run_statements",
    "trade_row",
    "upsert_feature_rows",
    "wallet_fills",
    "write_classified",
]


@dataclass(frozen=True, slots=True)
class Upsert:
    """An INSERT of whole rows with its ON CONFLICT clause: what a store may write in bulk
    (PostgreSQL: COPY into a staging table, then this upsert from it, in one statement)."""

    table: str
    columns: tuple[str, ...]
    on_conflict: str

    @property
    def sql(self) -> str:
        """The row-at-a-time form, for executemany."""
        columns = ", ".join(self.columns)
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {self.table} ({columns}) VALUES ({marks})\n{self.on_conflict}"


#: A store write: plain SQL run for each row, or an upsert of whole rows.
Statement: TypeAlias = tuple[str | Upsert, Sequence[tuple[Any, ...]]]

TRADE_COLUMNS = ("trade_id", "proxy_wallet", "condition_id", "side", "size", "price", "timestamp")
# A trade_id already stored changes nothing, so the change count is exactly the new trades.
TRADES = Upsert("trades", TRADE_COLUMNS, "ON CONFLICT (trade_id) DO NOTHING")

INSERT_MARKET_SQL = """
INSERT INTO markets (condition_id, category) VALUES (?, ?)
ON CONFLICT (condition_id) DO UPDATE SET category = excluded.category"""

CATEGORIES_SQL = "SELECT condition_id, category FROM markets"
UNKNOWN_CATEGORY = "unknown"

_new_tuple = tuple.__new__

FEATURES = Upsert(
    "wallet_features",
    FEATURE_ROW_KEYS,
    f"""ON CONFLICT (proxy_wallet, feature_date, window_days) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in FEATURE_ROW_KEYS[3:])}
WHERE excluded.source = 'batch' OR wallet_features.source = 'on_demand'""",
)
UPSERT_FEATURES_SQL = FEATURES.sql

_CLASSIFICATION_KEYS = (
    "proxy_wallet", "feature_date", "status", "persona", "reason", "stage", "metric_value",
    "threshold", "confidence", "features_source", "rules_version", "as_of", "classified_at",
)  # fmt: skip

CLASSIFICATIONS = Upsert(
    "wallet_classifications",
    _CLASSIFICATION_KEYS,
    f"""ON CONFLICT (proxy_wallet, feature_date) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in _CLASSIFICATION_KEYS[2:])}
WHERE excluded.features_source = 'batch'
   OR wallet_classifications.features_source = 'on_demand'""",
)

# Traits follow their classification: replaced only when the classification upsert above won,
# i.e. the incoming source is batch or the stored classification is not.
_CLASSIFICATION_WON = """(
    ? = 'batch' OR (SELECT features_source FROM wallet_classifications
                    WHERE proxy_wallet = ? AND feature_date = ?) = 'on_demand')"""

DELETE_TRAITS_SQL = f"""
DELETE FROM wallet_traits WHERE proxy_wallet = ? AND feature_date = ? AND {_CLASSIFICATION_WON}"""

INSERT_TRAIT_SQL = f"""
INSERT INTO wallet_traits (proxy_wallet, feature_date, trait, value)
SELECT ?, ?, ?, ? WHERE {_CLASSIFICATION_WON}
ON CONFLICT (proxy_wallet, feature_date, trait) DO UPDATE SET value = excluded.value"""

RECORD_WALLET_SQL = """
INSERT INTO wallets (proxy_wallet, discovered_at, source, first_seen_at, on_demand_status,
                     on_demand_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (proxy_wallet) DO UPDATE SET
    on_demand_status = excluded.on_demand_status, on_demand_at = excluded.on_demand_at"""


@dataclass(frozen=True, slots=True)
class Classified:
    """A FeatureSet and the classification computed from it, written together."""

    features: FeatureSet
    result: Classification


def run_statements(conn: Connection, statements: Iterable[Statement]) -> int:
    """Run store writes on `conn` (inside the caller's transaction); return the rows changed."""
    changed = 0
    for statement, rows in statements:
        if not rows:
            continue
        if isinstance(statement, Upsert):
            changed += conn.bulk_upsert(statement, rows)
        else:
            before = conn.total_changes
            conn.executemany(statement, rows)
            changed += conn.total_changes - before
    return changed


def trade_row(trade: Trade) -> tuple[Any, ...]:
    return (
        trade.trade_id, trade.proxy_wallet, trade.condition_id, trade.side,
        trade.size, trade.price, trade.timestamp,
    )  # fmt: skip


def insert_trade_rows(conn: Connection, rows: Iterable[Sequence[Any]]) -> int:
    """Insert trade rows (in `trade_row` order) in one transaction; return how many were new."""
    with transaction(conn):
        return conn.bulk_upsert(TRADES, [tuple(row) for row in rows])


def insert_markets(conn: Connection, markets: Iterable[Market]) -> int:
    """Upsert markets in one transaction; return the number written."""
    rows = [(market.condition_id, market.category) for market in markets]
    with transaction(conn):
        conn.executemany(INSERT_MARKET_SQL, rows)
    return len(rows)


def fills_by_wallet(
    conn: Connection, wallets: Iterable[str], as_of: int
) -> Iterator[tuple[str, list[Fill]]]:
    """(wallet, its trades ≤ as_of) for each of `wallets` that has any, from one query."""
    dialect = conn.dialect
    category = dict(conn.execute(CATEGORIES_SQL))
    rows = conn.execute(dialect.wallet_fills_sql, (dialect.wallet_set(list(wallets)), as_of))
    return wallet_fills(rows.fetchall(), category)


def wallet_fills(
    rows: Sequence[Sequence[Any]], category: dict[str, str]
) -> Iterator[tuple[str, list[Fill]]]:
    """(wallet, its Fills) for each run of one wallet's rows, the rows being
    `(proxy_wallet, trade_id, condition_id, side, size, price, timestamp)` as read.

    Column by column, so that no Python code runs per row: building a Fill per row through its
    constructor (and looking its category up in a loop) cost more than the query itself (see
    issue 14's profile). The category is looked up in Python, which is faster than a join.
    """
    if not rows:
        return
    wallets, trade_ids, markets, sides, sizes, prices, stamps = zip(*rows, strict=True)
    categories = map(category.get, markets, itertools.repeat(UNKNOWN_CATEGORY))
    columns = zip(trade_ids, markets, sides, sizes, prices, stamps, categories, strict=True)
    # `tuple.__new__` over the columns: no Python code per row (Fill is a NamedTuple).
    fills = list(map(_new_tuple, itertools.repeat(Fill), columns))
    for wallet, start, end in wallet_runs(wallets):
        yield wallet, fills[start:end]


def fill_columns(
    rows: Sequence[Sequence[Any]], category: dict[str, str]
) -> tuple[FillColumns, list[Run]]:
    """The rows of `wallet_fills` as columns, with the runs of one wallet's rows: the rebuild's
    shard kernel takes them so, without a Fill per row."""
    from agents.core.columns import FillColumns  # numpy: only where shards are computed

    if not rows:
        return FillColumns.of([]), []
    wallets, trade_ids, markets, sides, sizes, prices, stamps = zip(*rows, strict=True)
    categories = map(category.get, markets, itertools.repeat(UNKNOWN_CATEGORY))
    columns = FillColumns.from_values(trade_ids, markets, sides, sizes, prices, stamps, categories)
    return columns, wallet_runs(wallets)


def wallet_runs(wallets: Iterable[str]) -> list[Run]:
    """The runs of equal wallets in `wallets`, each (wallet, first row, end row)."""
    runs: list[Run] = []
    start = 0
    for wallet, run in itertools.groupby(wallets):
        end = start + len(list(run))
        runs.append((wallet, start, end))
        start = end
    return runs


def fills_for_wallet(conn: Connection, wallet: str, as_of: int) -> list[Fill]:
    """All of one wallet's trades up to as_of (the same read as for many wallets)."""
    return next((fills for _, fills in fills_by_wallet(conn, (wallet,), as_of)), [])


def feature_row(features: FeatureSet) -> tuple[Any, ...]:
    values = features.__dict__
    return tuple(values[key] for key in FEATURE_ROW_KEYS)


def upsert_feature_rows(conn: Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Upsert feature rows (values in `wallet_features` column order) in one transaction."""
    with transaction(conn):
        return conn.bulk_upsert(FEATURES, list(rows))


def winners(items: Iterable[Classified]) -> list[Classified]:
    """One item per (wallet, feature_date): the last batch one if any, else the last one."""
    chosen: dict[tuple[str, str], Classified] = {}
    for item in items:
        key = (item.features.proxy_wallet, item.features.feature_date)
        held = chosen.get(key)
        if held is None or item.features.source == "batch" or held.features.source != "batch":
            chosen[key] = item
    return list(chosen.values())


def classified_statements(items: Sequence[Classified], now: float) -> list[Statement]:
    """The writes that store a batch of classified FeatureSets, in order.

    One item per key (`winners`): an upsert may not touch the same row twice in one statement.
    """
    features: list[tuple[Any, ...]] = []
    classifications: list[tuple[Any, ...]] = []
    deletes: list[tuple[Any, ...]] = []
    traits: list[tuple[Any, ...]] = []
    for item in winners(items):
        fs, result = item.features, item.result
        guard = (fs.source, fs.proxy_wallet, fs.feature_date)
        features.append(feature_row(fs))
        classifications.append((
            fs.proxy_wallet, fs.feature_date, result.status, result.persona, result.reason,
            result.stage, result.metric_value, result.threshold, result.confidence, fs.source,
            result.rules_version, fs.as_of, now,
        ))  # fmt: skip
        deletes.append((fs.proxy_wallet, fs.feature_date, *guard))
        traits.extend(
            (fs.proxy_wallet, fs.feature_date, trait, value, *guard)
            for trait, value in result.traits
        )
    return [
        (FEATURES, features),
        (CLASSIFICATIONS, classifications),
        (DELETE_TRAITS_SQL, deletes),
        (INSERT_TRAIT_SQL, traits),
    ]


def write_classified(conn: Connection, items: Sequence[Classified], classified_at: float) -> None:
    """Store FeatureSets, their classifications and traits in one transaction."""
    with transaction(conn):
        run_statements(conn, classified_statements(items, classified_at))
