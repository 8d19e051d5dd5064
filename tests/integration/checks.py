"""Setup and assertions the integration tests share: generated wallets in, SQLite read back."""

from __future__ import annotations

import asyncio
import random
from typing import NamedTuple

from agents.core.records import Market, Trade, WalletDiscovered
from agents.data.generate import Dataset, GenerateOptions, generate
from agents.store import Connection, connect, insert_markets, migrate
from config.settings import Settings
from streams.topics import ensure_topics
from tests.conftest import wait_until

__all__ = ["Scenario", "count", "prepare_scenario", "wait_until_classified"]

HANDLED = "SELECT COUNT(*) FROM wallets WHERE on_demand_at IS NOT NULL"
SUCCEEDED = "SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'success'"
CLASSIFIED = "SELECT COUNT(*) FROM wallet_classifications"


class Scenario(NamedTuple):
    """Generated wallets ready to stream, and an open connection to the worker's database."""

    dataset: Dataset
    trades: list[Trade]
    discoveries: list[WalletDiscovered]
    conn: Connection


def prepare_scenario(
    bootstrap: str,
    settings: Settings,
    options: GenerateOptions,
    source: str,
    rng: random.Random | None = None,
) -> Scenario:
    """Create the topics, the schema and the markets; trades (shuffled by `rng`, so every batch
    touches many wallets) and one discovery per wallet at the data's as_of."""
    dataset = generate(options)
    trades = [Trade.model_validate(row) for row in dataset.trades()]
    if rng is not None:
        rng.shuffle(trades)
    discoveries = [
        WalletDiscovered(proxy_wallet=wallet, discovered_at=options.end, source=source)
        for wallet in dataset.wallets
    ]
    asyncio.run(ensure_topics(bootstrap, settings))
    conn = connect(settings.database.url)
    migrate(conn)
    insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
    return Scenario(dataset, trades, discoveries, conn)


def count(conn: Connection, sql: str, *params: object) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def grew(conn: Connection, sql: str, before: int) -> bool:
    """Whether the count `sql` returns is now above `before` (for polling)."""
    return count(conn, sql) > before


def wait_until_classified(conn: Connection, discoveries: int, timeout: float = 60) -> None:
    """Wait until every discovery was handled and every on-demand success has its classification."""
    wait_until(lambda: count(conn, HANDLED) == discoveries, timeout, "every discovery handled")
    wait_until(
        lambda: count(conn, CLASSIFIED) == count(conn, SUCCEEDED),
        60, "a classification per successful discovery",
    )  # fmt: skip
