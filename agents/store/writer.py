"""The agents' asynchronous writer, on either store: `open_store(settings.database)`.

Each agent's batch is one `run_batch` transaction; what it writes is the same on both stores
(`agents.store.tables`), how it is written is each store's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from agents.core.records import Trade
from agents.store.connection import is_postgres
from agents.store.tables import (
    RECORD_WALLET_SQL,
    TRADES,
    Classified,
    Statement,
    classified_statements,
    trade_row,
)
from config.settings import DatabaseSettings

__all__ = ["Store", "open_store"]


class Store(ABC):
    """Batched, idempotent writes; each call is one transaction."""

    @abstractmethod
    async def run_batch(self, statements: Sequence[Statement]) -> int:
        """Run store writes in one transaction; return the rows changed."""

    @abstractmethod
    async def close(self) -> None: ...

    async def insert_trades(self, trades: Sequence[Trade]) -> int:
        """Insert a batch of trades (a stored trade_id is kept); return how many were new."""
        return await self.run_batch([(TRADES, [trade_row(t) for t in trades])])

    async def record_wallets(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Record discovered wallets (first discovery kept) with their on-demand status."""
        await self.run_batch([(RECORD_WALLET_SQL, rows)])

    async def write_classified(self, items: Sequence[Classified], classified_at: float) -> None:
        """FeatureSets, classifications and traits of one batch, in one transaction."""
        await self.run_batch(classified_statements(items, classified_at))


async def open_store(database: DatabaseSettings) -> Store:
    """Migrate the configured database, then open its writer."""
    if is_postgres(database.url):
        from agents.store.postgres import PostgresStore

        return await PostgresStore.open(database)
    from agents.store.sqlite import SqliteStore

    return await SqliteStore.open(database.url, database.busy_timeout_ms)
