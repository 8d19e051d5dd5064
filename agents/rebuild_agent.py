"""Rebuild agent: the daily authoritative rebuild (SPEC §9), then everyone reclassified.

The computation is `agents.compute.rebuild.run_rebuild` (processes, no event loop). This agent
runs it off the event loop and publishes each wallet's 30-day FeatureSet (`source=batch`) to
`wallet-features`, so the classifier reclassifies every active wallet. The worker schedules it
daily at `rebuild.at` UTC on the leader (`streams.app`); `personas rebuild` runs it by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from agents.compute.rebuild import (
    RebuildResult,
    feature_set_from_row,
    options_from_settings,
    run_rebuild,
)
from agents.context import AgentContext, Sender
from agents.core.codec import encode

__all__ = ["STAGE", "cron_expression", "daily_rebuild", "publish_rows"]

log = logging.getLogger("personas.rebuild")

STAGE = "rebuild"
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


async def daily_rebuild(context: AgentContext) -> RebuildResult:
    """Rebuild as of now (SPEC §3: the run's start), publish, and record the metrics."""
    settings, metrics = context.settings, context.metrics
    as_of = int(context.clock())
    log.info("daily rebuild started, as_of %d", as_of)
    options = options_from_settings(settings, as_of, computed_at=context.clock())
    # Processes do the work; a thread waits for them so the event loop keeps serving.
    result = await asyncio.to_thread(run_rebuild, settings.database.path, options)
    started = time.perf_counter()
    result.published = await context.retry(
        "rebuild-publish",
        publish_rows,
        result.publish_rows,
        context.sender,
        settings.topics.features,
    )
    result.publish_s = time.perf_counter() - started
    result.duration_s += result.publish_s
    metrics.rebuild_duration.set(result.duration_s)
    metrics.rebuild_wallets.set(result.wallets)
    metrics.rebuild_rows.set(result.rows_written)
    log.info("daily rebuild done: %s", result.summary())
    return result
