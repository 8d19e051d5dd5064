"""Ingest: `trades` → validated → one INSERT OR IGNORE transaction per batch → offsets committed.

The trades topic is the high-volume one: batches of up to `ingest.batch_max` trades, fetched with
up to 5 MiB per partition so that one fetch fills a batch.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import faust

from streams.codec import decode
from streams.consumer import register_consumer
from streams.errors import InvalidMessage
from streams.records import Trade
from streams.runtime import Record, Runtime

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["register"]

# Bytes per partition per fetch: ~25k trades of ~200 B, so one fetch fills a batch.
MAX_PARTITION_FETCH_BYTES = 5 * 2**20


def register(app: faust.App, runtime: Runtime, topics: AppTopics, bootstrap: str) -> None:
    """Start the trades consumer with the app (after its producer, for dead letters)."""
    config, metrics = runtime.settings.ingest, runtime.metrics

    def handle(records: list[Record]) -> Awaitable[None]:
        # Decoded now, while the previous batch is still being written.
        trades: list[Trade] = []
        rejected: list[tuple[Record, BaseException]] = []
        for record in records:
            try:
                trades.append(decode(Trade, record.value))
            except InvalidMessage as exc:
                rejected.append((record, exc))
        return write(trades, rejected)

    async def write(trades: list[Trade], rejected: list[tuple[Record, BaseException]]) -> None:
        store = await runtime.store()
        inserted = await runtime.retry("ingest", store.insert_trades, trades) if trades else 0
        await runtime.dead_letter_all(rejected)
        metrics.trades_ingested.labels("stored").inc(inserted)
        metrics.trades_ingested.labels("duplicate").inc(len(trades) - inserted)
        metrics.trades_ingested.labels("rejected").inc(len(rejected))

    register_consumer(
        app, runtime, "ingest", topics.trades, bootstrap, handle, config,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
    )  # fmt: skip
