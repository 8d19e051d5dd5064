"""`personas rebuild [--as-of T] [--no-publish]`: the authoritative rebuild, now."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from typing import Any

from agents.compute.rebuild import (
    RebuildResult,
    feature_set_from_row,
    options_from_settings,
    run_rebuild,
)
from agents.core.records import MAX_CLOCK_SKEW_S
from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, open_existing, timestamp_arg
from streams.cli.status import EXIT_FAILURE, EXIT_OK
from streams.producer import publisher
from streams.progress import Progress

__all__ = ["command_rebuild"]


async def _publish_standalone(bootstrap: str, settings: Settings, result: RebuildResult) -> int:
    async with publisher(bootstrap, settings) as pub:
        feature_sets = (feature_set_from_row(row) for row in result.publish_rows)
        return await pub.send_many(settings.topics.features, feature_sets)


def command_rebuild(args: argparse.Namespace) -> int:
    """Run the rebuild, publish its 30-day rows unless --no-publish, print the summary."""
    settings = load_settings(args.config)
    as_of = timestamp_arg(args.as_of, "--as-of")
    open_existing(settings).close()  # a clear error when there is no database yet
    if as_of > time.time() + MAX_CLOCK_SKEW_S:
        warn(f"--as-of {_iso(as_of)} is in the future: its windows hold no trades yet")
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

        result = run_rebuild(
            settings.database.path, options_from_settings(settings, as_of, time.time()), report
        )
        progress.finish(result.wallets)
        if bootstrap is not None:
            started = time.perf_counter()
            result.published = asyncio.run(_publish_standalone(bootstrap, settings, result))
            result.publish_s = time.perf_counter() - started
            result.duration_s += result.publish_s
    if result.wallets == 0:
        days = max(options_from_settings(settings, as_of).windows)
        warn(f"no wallet has a trade in the {days} days up to {_iso(as_of)}: nothing rebuilt")
    summary = result.summary()
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return EXIT_FAILURE if result.failed_wallets else EXIT_OK


def warn(message: str) -> None:
    print(f"personas rebuild: warning: {message}", file=sys.stderr)


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _print_summary(summary: dict[str, Any]) -> None:
    phases = summary["phases_s"]
    print(
        f"rebuild as_of {summary['as_of']} ({summary['feature_date']}): "
        f"{summary['wallets']:,} wallets, {summary['rows_written']:,} rows written, "
        f"{summary['published']:,} published in {summary['duration_s']:.1f}s "
        f"({summary['wallets_per_s']:,.0f} wallets/s)\n"
        f"  read+compute {phases['read_compute']:.2f}s  write {phases['write']:.2f}s  "
        f"publish {phases['publish']:.2f}s  "
        f"({summary['shards']} shards, {summary['workers'] or 'serial'} workers)\n"
        "  (a worker's personas_rebuild_* metrics describe its own daily rebuild, not this run)"
    )
    if summary["fallback_shards"]:
        print(f"  shards recomputed serially: {summary['fallback_shards']}", file=sys.stderr)
    if summary["failed_wallets"]:
        print(f"  wallets that failed: {', '.join(summary['failed_wallets'])}", file=sys.stderr)
