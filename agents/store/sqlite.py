"""SQLite access: connections, migrations, and the idempotent, precedence-aware writes (SPEC §6).

Writes are batched (one transaction per batch) and every one of them is an upsert or an
INSERT OR IGNORE, so a redelivered message rewrites the same row instead of adding one.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from agents.core.errors import StoreError
from agents.core.features import Fill
from agents.core.records import FeatureSet, Market, Trade
from agents.core.rules import Classification
from agents.store.schema import FEATURE_ROW_KEYS, MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "UPSERT_FEATURES_SQL",
    "Classified",
    "Store",
    "connect",
    "feature_row",
    "fills_by_wallet",
    "fills_for_wallet",
    "insert_markets",
    "insert_trade_rows",
    "migrate",
    "open_reader",
    "trade_row",
    "upsert_feature_rows",
    "write_classified",
]

_wallet_of = itemgetter(0)
# Per reader: a set-based read sorts its rows; a bigger page cache keeps that off temp files.
READ_CACHE_KIB = 32_768

INSERT_TRADE_SQL = """
INSERT OR IGNORE INTO trades (trade_id, proxy_wallet, condition_id, side, size, price, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?)"""

INSERT_MARKET_SQL = """
INSERT INTO markets (condition_id, category) VALUES (?, ?)
ON CONFLICT (condition_id) DO UPDATE SET category = excluded.category"""

# One query for any set of wallets: they arrive as one JSON array parameter, so there is no
# per-wallet query and no limit on bound variables. Ordered by wallet only (the index order, no
# sort): the core orders each wallet's trades by (timestamp, trade_id) itself. The category is
# looked up in Python, which is faster than a join per trade.
WALLET_FILLS_SQL = """
SELECT proxy_wallet, trade_id, condition_id, side, size, price, timestamp
FROM trades
WHERE proxy_wallet IN (SELECT value FROM json_each(?)) AND timestamp <= ?
ORDER BY proxy_wallet"""

CATEGORIES_SQL = "SELECT condition_id, category FROM markets"
UNKNOWN_CATEGORY = "unknown"

# Batch beats on-demand: an on_demand row never replaces a batch row for the same key.
UPSERT_FEATURES_SQL = f"""
INSERT INTO wallet_features ({", ".join(FEATURE_ROW_KEYS)})
VALUES ({", ".join("?" for _ in FEATURE_ROW_KEYS)})
ON CONFLICT (proxy_wallet, feature_date, window_days) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in FEATURE_ROW_KEYS[3:])}
WHERE excluded.source = 'batch' OR wallet_features.source = 'on_demand'"""

_CLASSIFICATION_KEYS = (
    "proxy_wallet", "feature_date", "status", "persona", "reason", "stage", "metric_value",
    "threshold", "confidence", "features_source", "rules_version", "as_of", "classified_at",
)  # fmt: skip

UPSERT_CLASSIFICATION_SQL = f"""
INSERT INTO wallet_classifications ({", ".join(_CLASSIFICATION_KEYS)})
VALUES ({", ".join("?" for _ in _CLASSIFICATION_KEYS)})
ON CONFLICT (proxy_wallet, feature_date) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in _CLASSIFICATION_KEYS[2:])}
WHERE excluded.features_source = 'batch' OR wallet_classifications.features_source = 'on_demand'"""

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


def connect(path: Path | str, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open a connection in WAL mode with a busy timeout; autocommit off for explicit batches."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    _configure(conn, busy_timeout_ms)
    return conn


def open_reader(path: Path | str, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """A read-only connection (WAL readers never block the writer, nor each other)."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
    return conn


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the tail).
    conn.execute("PRAGMA synchronous = NORMAL")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations (tracked in PRAGMA user_version); return the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this program's {SCHEMA_VERSION}"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def trade_row(trade: Trade) -> tuple[Any, ...]:
    return (
        trade.trade_id, trade.proxy_wallet, trade.condition_id, trade.side,
        trade.size, trade.price, trade.timestamp,
    )  # fmt: skip


def insert_trade_rows(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> int:
    """Insert trade rows (in `trade_row` order) in one transaction; return how many were new."""
    with transaction(conn):
        # INSERT OR IGNORE changes no row for a trade_id already stored, so the change count is
        # exactly the new trades and the rest are duplicates.
        before = conn.total_changes
        conn.executemany(INSERT_TRADE_SQL, rows)
        return conn.total_changes - before


def insert_markets(conn: sqlite3.Connection, markets: Iterable[Market]) -> int:
    """Upsert markets in one transaction; return the number written."""
    rows = [(market.condition_id, market.category) for market in markets]
    with transaction(conn):
        conn.executemany(INSERT_MARKET_SQL, rows)
    return len(rows)


def fills_by_wallet(
    conn: sqlite3.Connection, wallets: Iterable[str], as_of: int
) -> Iterator[tuple[str, list[Fill]]]:
    """(wallet, its trades ≤ as_of) for each of `wallets` that has any, from one query."""
    category = dict(conn.execute(CATEGORIES_SQL)).get
    cursor = conn.execute(WALLET_FILLS_SQL, (orjson.dumps(list(wallets)).decode(), as_of))
    for wallet, rows in itertools.groupby(cursor, key=_wallet_of):
        yield (
            wallet,
            [
                Fill(trade_id, market, side, size, price, ts, category(market, UNKNOWN_CATEGORY))
                for _, trade_id, market, side, size, price, ts in rows
            ],
        )


def fills_for_wallet(conn: sqlite3.Connection, wallet: str, as_of: int) -> list[Fill]:
    """All of one wallet's trades up to as_of (the same read as for many wallets)."""
    return next((fills for _, fills in fills_by_wallet(conn, (wallet,), as_of)), [])


def feature_row(features: FeatureSet) -> tuple[Any, ...]:
    values = features.__dict__
    return tuple(values[key] for key in FEATURE_ROW_KEYS)


def upsert_feature_rows(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Upsert feature rows (values in `wallet_features` column order) in one transaction."""
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(UPSERT_FEATURES_SQL, rows)
        return conn.total_changes - before


def winners(items: Iterable[Classified]) -> list[Classified]:
    """One item per (wallet, feature_date): the last batch one if any, else the last one."""
    chosen: dict[tuple[str, str], Classified] = {}
    for item in items:
        key = (item.features.proxy_wallet, item.features.feature_date)
        held = chosen.get(key)
        if held is None or item.features.source == "batch" or held.features.source != "batch":
            chosen[key] = item
    return list(chosen.values())


def classified_statements(
    items: Sequence[Classified], now: float
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The (sql, rows) pairs that store a batch of classified FeatureSets, in order."""
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
        (UPSERT_FEATURES_SQL, features),
        (UPSERT_CLASSIFICATION_SQL, classifications),
        (DELETE_TRAITS_SQL, deletes),
        (INSERT_TRAIT_SQL, traits),
    ]


def write_classified(
    conn: sqlite3.Connection, items: Sequence[Classified], classified_at: float
) -> None:
    """Store FeatureSets, their classifications and traits in one transaction."""
    with transaction(conn):
        for sql, rows in classified_statements(items, classified_at):
            conn.executemany(sql, rows)


class transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class Store:
    """The agents' asynchronous writes, on one connection (reads happen in the feature pool)."""

    def __init__(self, writer: aiosqlite.Connection) -> None:
        self._writer = writer
        # Agents share one writer connection; SQLite has one writer anyway, and a lock here
        # keeps two agents' transactions from interleaving on it.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, busy_timeout_ms: int) -> Store:
        """Migrate the database, then open the writer."""
        with closing(connect(path, busy_timeout_ms)) as schema_conn:
            migrate(schema_conn)
        conn = await aiosqlite.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA synchronous = NORMAL")
        return cls(conn)

    async def close(self) -> None:
        await self._writer.close()

    async def run_batch(self, statements: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> int:
        """Run (sql, rows) pairs in one transaction; return the rows changed."""
        conn = self._writer
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                for sql, rows in statements:
                    if rows:
                        await conn.executemany(sql, rows)
                changed = conn.total_changes - before
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
        return changed

    async def insert_trades(self, trades: Sequence[Trade]) -> int:
        """INSERT OR IGNORE a batch of trades; return how many were new."""
        return await self.run_batch([(INSERT_TRADE_SQL, [trade_row(t) for t in trades])])

    async def record_wallets(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Record discovered wallets (first discovery kept) with their on-demand status."""
        await self.run_batch([(RECORD_WALLET_SQL, rows)])

    async def write_classified(self, items: Sequence[Classified], classified_at: float) -> None:
        """FeatureSets, classifications and traits of one batch, in one transaction."""
        await self.run_batch(classified_statements(items, classified_at))
