"""Rebuild agent: the daily authoritative rebuild (SPEC §9), then everyone reclassified.

The computation is `agents.compute.rebuild.run_rebuild` (processes, no event loop). This agent
runs it off the event loop, publishes each wallet's 30-day FeatureSet (`source=batch`) to
`wallet-features`, so the classifier reclassifies every active wallet, and marks the day published
in `rebuild_runs` (`publish_rebuild`). The worker schedules it daily at `rebuild.at` UTC on the
leader (`streams.app`); `personas rebuild` runs the same steps by hand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, NoReturn

from agents.compute.rebuild import (
    RebuildResult,
    feature_set_from_row,
    options_from_settings,
    run_rebuild,
)
from agents.context import AgentContext, Clock, Sender
from agents.core.codec import encode
from agents.retry import Retry
from agents.store import Store
from agents.store.runs import MARK_PUBLISHED_SQL

__all__ = ["STAGE", "cron_expression", "daily_rebuild", "publish_rebuild", "publish_rows"]

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


def _raise_to_caller(operation: str, exc: BaseException) -> NoReturn:
    raise exc


async def daily_rebuild(context: AgentContext) -> RebuildResult:
    """Rebuild as of now (SPEC §3: the run's start), publish, and record the metrics.

    An error that retrying will not fix is raised, not fatal as in the agents (whose retry stops
    the worker): the worker records the failed rebuild and keeps consuming.
    """
    settings, metrics = context.settings, context.metrics
    as_of = int(context.clock())
    log.info("daily rebuild started, as_of %d", as_of)
    options = options_from_settings(settings, as_of, computed_at=context.clock())
    # Processes do the work; a thread waits for them so the event loop keeps serving.
    result = await asyncio.to_thread(run_rebuild, settings.database.url, options)
    retry = Retry(metrics.transient_retries, _raise_to_caller)
    await retry(
        "rebuild-publish", publish_rebuild, result, context.sender, context.store,
        settings.topics.features, context.clock,
    )  # fmt: skip
    metrics.rebuild_duration.set(result.duration_s)
    metrics.rebuild_wallets.set(result.wallets)
    metrics.rebuild_rows.set(result.rows_written)
    log.info("daily rebuild done: %s", result.summary())
    return result
