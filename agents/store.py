"""SQLite access: connections, migrations, and the idempotent, precedence-aware writes (SPEC §6).

Writes are batched (one transaction per batch) and every one of them is an upsert or an
INSERT OR IGNORE, so a redelivered message rewrites the same row instead of adding one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from agents.features import Fill
from agents.personas import Classification
from agents.schema import FEATURE_COLUMNS, MIGRATIONS, SCHEMA_VERSION
from streams.errors import StoreError
from streams.records import FeatureSet, Market, Trade

__all__ = [
    "Classified",
    "Store",
    "connect",
    "fills_for_wallet",
    "insert_markets",
    "insert_trades",
    "migrate",
    "upsert_feature_rows",
    "write_classified",
]

FEATURE_NAMES = tuple(name for name, _ in FEATURE_COLUMNS)
_ROW_KEYS = ("proxy_wallet", "feature_date", "window_days", "as_of", "source", "computed_at")
_ALL_FEATURE_KEYS = _ROW_KEYS + FEATURE_NAMES

INSERT_TRADE_SQL = """
INSERT OR IGNORE INTO trades (trade_id, proxy_wallet, condition_id, side, size, price, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?)"""

INSERT_MARKET_SQL = """
INSERT INTO markets (condition_id, category) VALUES (?, ?)
ON CONFLICT (condition_id) DO UPDATE SET category = excluded.category"""

FILLS_SQL = """
SELECT t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp,
       COALESCE(m.category, 'unknown')
FROM trades AS t LEFT JOIN markets AS m ON m.condition_id = t.condition_id
WHERE t.proxy_wallet = ? AND t.timestamp <= ?"""

# Batch beats on-demand: an on_demand row never replaces a batch row for the same key.
UPSERT_FEATURES_SQL = f"""
INSERT INTO wallet_features ({", ".join(_ALL_FEATURE_KEYS)})
VALUES ({", ".join("?" for _ in _ALL_FEATURE_KEYS)})
ON CONFLICT (proxy_wallet, feature_date, window_days) DO UPDATE SET
    {", ".join(f"{key} = excluded.{key}" for key in _ALL_FEATURE_KEYS[3:])}
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


def insert_trades(conn: sqlite3.Connection, trades: Sequence[Trade]) -> int:
    """Insert trades in one transaction; return how many were new (the rest are duplicates)."""
    with transaction(conn):
        before = conn.total_changes
        conn.executemany(INSERT_TRADE_SQL, [trade_row(trade) for trade in trades])
        return conn.total_changes - before


def insert_markets(conn: sqlite3.Connection, markets: Iterable[Market]) -> int:
    """Upsert markets in one transaction; return the number written."""
    rows = [(market.condition_id, market.category) for market in markets]
    with transaction(conn):
        conn.executemany(INSERT_MARKET_SQL, rows)
    return len(rows)


def fills_for_wallet(conn: sqlite3.Connection, wallet: str, as_of: int) -> list[Fill]:
    """All of a wallet's trades up to as_of, in one indexed query."""
    return [Fill(*row) for row in conn.execute(FILLS_SQL, (wallet, as_of))]


def feature_row(features: FeatureSet) -> tuple[Any, ...]:
    values = features.__dict__
    return tuple(values[key] for key in _ALL_FEATURE_KEYS)


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


def write_classified(conn: sqlite3.Connection, items: Sequence[Classified]) -> None:
    """Store FeatureSets, their classifications and traits in one transaction."""
    with transaction(conn):
        for sql, rows in classified_statements(items, time.time()):
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
    """The agents' asynchronous access: one writer connection and a pool of readers."""

    def __init__(self, writer: aiosqlite.Connection, readers: list[aiosqlite.Connection]) -> None:
        self._writer = writer
        # Agents share one writer connection; SQLite has one writer anyway, and a lock here
        # keeps two agents' transactions from interleaving on it.
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for reader in readers:
            self._readers.put_nowait(reader)
        self._all = [writer, *readers]

    @classmethod
    async def open(cls, path: Path, busy_timeout_ms: int, read_connections: int = 1) -> Store:
        """Migrate the database, then open the writer and `read_connections` readers."""
        with closing(connect(path, busy_timeout_ms)) as schema_conn:
            migrate(schema_conn)
        conns: list[aiosqlite.Connection] = []
        for _ in range(1 + read_connections):
            conn = await aiosqlite.connect(
                path, timeout=busy_timeout_ms / 1000, isolation_level=None
            )
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await conn.execute("PRAGMA synchronous = NORMAL")
            conns.append(conn)
        return cls(conns[0], conns[1:])

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()

    async def fills(self, wallet: str, as_of: int) -> list[Fill]:
        """A wallet's trades up to as_of, on a pooled read connection."""
        reader = await self._readers.get()
        try:
            async with reader.execute(FILLS_SQL, (wallet, as_of)) as cursor:
                return [Fill(*row) for row in await cursor.fetchall()]
        finally:
            self._readers.put_nowait(reader)

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

    async def write_classified(self, items: Sequence[Classified]) -> None:
        """FeatureSets, classifications and traits of one batch, in one transaction."""
        await self.run_batch(classified_statements(items, time.time()))
