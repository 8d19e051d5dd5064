"""Rebuild agent: publishing the authoritative rebuild (SPEC §9), so everyone is reclassified.

A rebuild's rows are computed by `agents.compute.rebuild.run_rebuild` on one host (`personas
rebuild`) or shard by shard over the workers (`agents.rebuild_jobs_agent`, which the worker's
leader starts daily at `rebuild.at` UTC, `streams.app`). Either way each wallet's 30-day
FeatureSet (`source=batch`) goes to `wallet-features` (`publish_rows`); `publish_rebuild` then
marks the day published in `rebuild_runs`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from agents.compute.rebuild import RebuildResult, feature_set_from_row
from agents.context import Clock, Sender
from agents.core.codec import encode
from agents.store import Store
from agents.store.runs import MARK_PUBLISHED_SQL

__all__ = ["cron_expression", "publish_rebuild", "publish_rows"]

# Deliveries awaited together: bounds memory while letting the producer batch.
PUBLISH_WINDOW = 5000


def cron_expression(at: str) -> str:
    """`HH:MM` → a daily crontab expression (`MM HH * * *`)."""
    hours, minutes = at.split(":")
    return f"{int(minutes)} {int(hours)} * * *"


def _feature_messages(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[bytes, bytes]]:
    for row in rows:
        features = feature_set_from_row(row)
        yield features.proxy_wallet.encode(), encode(features)


async def publish_rows(rows: Iterable[Sequence[Any]], sender: Sender, topic: str) -> int:
    """Send each row's FeatureSet keyed by wallet; return once every delivery is confirmed."""
    sent = 0
    pending: list[Awaitable[Any]] = []
    for key, value in _feature_messages(rows):
        pending.append(await sender.send(topic, key, value))
        if len(pending) >= PUBLISH_WINDOW:
            await asyncio.gather(*pending)
            sent += len(pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent + len(pending)


async def publish_rebuild(
    result: RebuildResult, sender: Sender, store: Store, topic: str, clock: Clock = time.time
) -> None:
    """Publish a rebuild's rows to `topic`, then mark its day published in `rebuild_runs`.

    A day with a failed wallet is not recorded, so there is nothing to mark. Sends and mark are
    idempotent (the same keyed rows, the same update), so a retry may redo both. The result gets
    the count published and the time it took once both are done.
    """
    started = time.perf_counter()
    published = await publish_rows(result.rows_to_publish, sender, topic)
    if not result.failed_wallets:
        mark = (clock(), result.feature_date, result.as_of)
        await store.run_batch([(MARK_PUBLISHED_SQL, [mark])])
    result.published = published
    result.publish_s = time.perf_counter() - started
    result.duration_s += result.publish_s
