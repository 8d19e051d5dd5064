"""Rebuild agent: the daily authoritative rebuild (SPEC §9) on a crontab, and `personas rebuild`.

The computation is `agents.rebuild.run_rebuild` (processes, no event loop); this module schedules
it, runs it off the event loop, publishes each wallet's 30-day FeatureSet (`source=batch`) so the
classifier reclassifies everyone, and reports metrics and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from agents.rebuild import RebuildResult, feature_set_from_row, options_from_settings, run_rebuild
from streams.codec import encode

if TYPE_CHECKING:
    import faust

    from config.settings import Settings
    from streams.app import AppTopics
    from streams.runtime import Runtime

__all__ = ["command_rebuild", "cron_expression", "register"]

log = logging.getLogger("personas.rebuild")

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


async def publish_rows(
    rows: Iterable[Sequence[Any]],
    send: Callable[[bytes, bytes], Awaitable[Awaitable[Any]]],
) -> int:
    """Send each row's FeatureSet keyed by wallet; return once every delivery is confirmed."""
    sent = 0
    pending: list[Awaitable[Any]] = []
    for key, value in _feature_messages(rows):
        pending.append(await send(key, value))
        if len(pending) >= PUBLISH_WINDOW:
            await asyncio.gather(*pending)
            sent += len(pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent + len(pending)


def _record(runtime: Runtime, result: RebuildResult) -> None:
    metrics = runtime.metrics
    metrics.rebuild_duration.set(result.duration_s)
    metrics.rebuild_wallets.set(result.wallets)
    metrics.rebuild_rows.set(result.rows_written)


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    """Schedule the rebuild daily at `rebuild.at` UTC, on the leader worker only."""
    settings = runtime.settings

    @app.crontab(cron_expression(settings.rebuild.at), timezone=UTC, on_leader=True)
    async def daily_rebuild() -> None:
        as_of = int(time.time())  # SPEC §3: the rebuild's as_of is the run's start
        log.info("daily rebuild started, as_of %d", as_of)
        loop = asyncio.get_running_loop()
        try:
            # Processes do the work; a thread waits for them so the event loop keeps serving.
            result = await loop.run_in_executor(
                None,
                lambda: run_rebuild(settings.database.path, options_from_settings(settings, as_of)),
            )

            async def send(key: bytes, value: bytes) -> Awaitable[Any]:
                return await runtime.send(topics.features, key, value)

            started = time.perf_counter()
            result.published = await runtime.retry(
                "rebuild-publish", lambda: publish_rows(result.publish_rows, send)
            )
            result.publish_s = time.perf_counter() - started
            result.duration_s += result.publish_s
        except Exception as exc:
            # A failed rebuild must not stop ingest and classification; the next run redoes it.
            runtime.health.problem("rebuild", f"last daily rebuild failed: {exc!r}")
            log.exception("daily rebuild failed")
            return
        runtime.health.clear("rebuild")
        runtime.health.progressed("rebuild")
        _record(runtime, result)
        log.info("daily rebuild done: %s", result.summary())


async def _publish_standalone(bootstrap: str, settings: Settings, result: RebuildResult) -> int:
    from streams.producer import publisher

    async with publisher(bootstrap, settings) as pub:
        feature_sets = (feature_set_from_row(row) for row in result.publish_rows)
        # send_many takes any record keyed by proxy_wallet; its annotation predates FeatureSet.
        return await pub.send_many(settings.topics.features, feature_sets)  # type: ignore[arg-type]


def command_rebuild(args: argparse.Namespace) -> int:
    """`personas rebuild [--as-of T] [--no-publish]`: run the authoritative rebuild now."""
    from config.settings import load_settings
    from streams.broker import broker_for
    from streams.commands import emit_json, open_existing, timestamp_arg
    from streams.progress import Progress

    settings = load_settings(args.config)
    as_of = timestamp_arg(args.as_of, "--as-of")
    open_existing(settings).close()  # a clear error when there is no database yet
    with contextlib.ExitStack() as stack:
        bootstrap = None
        if not args.no_publish:
            # Fail before the long computation, not after it; never start a broker of our own:
            # nothing would consume what we publish to it.
            bootstrap = stack.enter_context(broker_for(settings, start_embedded=False))
        progress = Progress("rebuild", 0, enabled=not args.json)

        def report(done: int, total: int) -> None:
            progress.total = total
            progress.update(done)

        result = run_rebuild(settings.database.path, options_from_settings(settings, as_of), report)
        progress.finish(result.wallets)
        if bootstrap is not None:
            started = time.perf_counter()
            result.published = asyncio.run(_publish_standalone(bootstrap, settings, result))
            result.publish_s = time.perf_counter() - started
            result.duration_s += result.publish_s
    summary = result.summary()
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return 1 if result.failed_wallets else 0


def _print_summary(summary: dict[str, Any]) -> None:
    phases = summary["phases_s"]
    print(
        f"rebuild as_of {summary['as_of']} ({summary['feature_date']}): "
        f"{summary['wallets']:,} wallets, {summary['rows_written']:,} rows written, "
        f"{summary['published']:,} published in {summary['duration_s']:.1f}s "
        f"({summary['wallets_per_s']:,.0f} wallets/s)\n"
        f"  read+compute {phases['read_compute']:.2f}s  write {phases['write']:.2f}s  "
        f"publish {phases['publish']:.2f}s  "
        f"({summary['shards']} shards, {summary['workers'] or 'serial'} workers)"
    )
    if summary["fallback_shards"]:
        print(f"  shards recomputed serially: {summary['fallback_shards']}", file=sys.stderr)
    if summary["failed_wallets"]:
        print(f"  wallets that failed: {', '.join(summary['failed_wallets'])}", file=sys.stderr)
