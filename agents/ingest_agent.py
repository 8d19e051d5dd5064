"""Ingest: `trades` → validated → one INSERT OR IGNORE transaction per batch (SPEC §6).

The trades topic is the high-volume one: batches of up to `ingest.batch_max` trades, fetched with
up to `MAX_PARTITION_FETCH_BYTES` per partition so that one fetch fills a batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from agents.context import AgentContext, Message, Rejected, decode_each
from agents.core.records import Trade

__all__ = ["MAX_PARTITION_FETCH_BYTES", "STAGE", "handle"]

STAGE = "ingest"
# Bytes per partition per fetch: ~25k trades of ~200 B, so one fetch fills a batch.
MAX_PARTITION_FETCH_BYTES = 5 * 2**20


def handle(batch: Sequence[Message], context: AgentContext) -> Awaitable[None]:
    """Decode now, beside the batch in flight; the awaitable stores the trades."""
    accepted, rejected = decode_each(Trade, batch)
    return _store([trade for _, trade in accepted], rejected, context)


async def _store(trades: list[Trade], rejected: list[Rejected], context: AgentContext) -> None:
    store, metrics = context.store, context.metrics
    inserted = await context.retry(STAGE, store.insert_trades, trades) if trades else 0
    await context.dead_letter(rejected)
    metrics.trades_ingested.labels("stored").inc(inserted)
    metrics.trades_ingested.labels("duplicate").inc(len(trades) - inserted)
    metrics.trades_ingested.labels("rejected").inc(len(rejected))
