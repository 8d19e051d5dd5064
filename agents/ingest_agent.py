"""Ingest agent: `trades` → validated → one INSERT OR IGNORE transaction per batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from streams.codec import decode
from streams.errors import InvalidMessage
from streams.records import Trade
from streams.runtime import Runtime, acknowledge

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["register"]


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    config = runtime.settings.ingest
    metrics = runtime.metrics

    @app.agent(topics.trades, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.noack_take(config.batch_max, config.batch_within_s):
            trades, rejected = [], []
            for event in events:
                try:
                    trades.append(decode(Trade, event.value))
                except InvalidMessage as exc:
                    rejected.append((event, exc))
            store = await runtime.store()
            inserted = await runtime.retry("ingest", store.insert_trades, trades)
            for event, exc in rejected:
                await runtime.dead_letter(event, exc)
            metrics.trades_ingested.labels("stored").inc(inserted)
            metrics.trades_ingested.labels("duplicate").inc(len(trades) - inserted)
            metrics.trades_ingested.labels("rejected").inc(len(rejected))
            await acknowledge(stream, events)
            runtime.health.progressed("ingest")
