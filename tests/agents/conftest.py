"""The in-process tier: each agent's handler driven with plain messages, a real store and an
in-memory sender; no broker, no worker process. Every test runs on both stores, SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
import pytest

from agents.context import AgentContext, Headers
from agents.core.codec import encode
from agents.core.features import DAY
from agents.core.records import Trade
from agents.metrics import AgentMetrics
from agents.retry import Retry
from agents.store import Connection, Store, connect, migrate, open_store
from config.settings import Settings
from tests.conftest import BACKENDS

WALLET = "0x" + "a" * 40
OTHER = "0x" + "b" * 40
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the clock every test's context reads


@dataclass(frozen=True)
class Msg:
    """A consumed message as the consumer hands it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def messages(
    topic: str, values: list[bytes | None], headers: tuple[tuple[str, bytes], ...] = ()
) -> list[Msg]:
    return [Msg(topic, 0, offset, b"k", value, headers) for offset, value in enumerate(values)]


@dataclass
class MemorySender:
    """Keeps what was sent; `hold()` keeps the broker's receipts back until `release()`."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    #: the headers and the partition asked for of each message in `sent`, in the same order
    headers: list[list[tuple[str, bytes]]] = field(default_factory=list)
    partitions: list[int | None] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _held: asyncio.Event | None = None

    def hold(self) -> None:
        self._held = asyncio.Event()

    def release(self) -> None:
        assert self._held is not None
        self._held.set()

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((topic, key, value))
        self.headers.append(list(headers or ()))
        self.partitions.append(partition)
        held = self._held
        return held.wait() if held is not None else asyncio.sleep(0)

    def to(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for name, _, value in self.sent if name == topic]


class Fatal(Exception):
    """What the worker's crash would do: stop, committing nothing."""


def fatal(operation: str, exc: BaseException) -> NoReturn:
    raise Fatal(operation) from exc


async def no_sleep(delay: float) -> None:
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await open_store(settings.database)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def context(settings: Settings, store: Store, sender: MemorySender) -> AgentContext:
    metrics = AgentMetrics()
    retry = Retry(metrics.transient_retries, fatal, sleep=no_sleep)
    return AgentContext(settings, store, sender, metrics, retry, clock=lambda: NOW)


@pytest.fixture
def db(settings: Settings, store: Store) -> Iterator[Connection]:
    """A second connection to the store's database: sees only what the store committed."""
    conn = connect(settings.database.url)
    migrate(conn)
    try:
        yield conn
    finally:
        conn.close()


def count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def counter(metric: Any, label: str) -> float:
    return float(metric.labels(label)._value.get())


def round_trips(wallet: str, n: int, end: int, *, won: bool = True) -> list[Trade]:
    """`n` buy-then-sell round trips in distinct markets, the last one a day before `end`."""
    trades = []
    for i in range(n):
        ts = end - (n - i) * DAY
        market = f"m{i}"
        sell_price = 0.6 if won else 0.3
        trades.append(
            Trade(
                trade_id=f"{wallet}-b{i}",
                proxy_wallet=wallet,
                condition_id=market,
                side="BUY",
                size=10.0,
                price=0.4,
                timestamp=ts,
            )
        )
        trades.append(
            Trade(
                trade_id=f"{wallet}-s{i}",
                proxy_wallet=wallet,
                condition_id=market,
                side="SELL",
                size=10.0,
                price=sell_price,
                timestamp=ts + 3600,
            )
        )
    return trades  # fmt: skip


def encoded(records: list[Trade]) -> list[bytes | None]:
    return [encode(record) for record in records]
