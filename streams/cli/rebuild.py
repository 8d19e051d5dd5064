"""`personas rebuild [--as-of T] [--no-publish]`: the authoritative rebuild, now, on this host.

`--distributed` starts one spread over the workers instead, `--status` shows the last of those
(`streams.cli.rebuild_runs`).

`personas rebuild --from DATE --to DATE [--force] [--dry-run] [--no-publish]` backfills past
days instead, each as of its end (SPEC §9, `agents.compute.backfill`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from agents.compute.backfill import (
    Action,
    BackfillProgress,
    day_as_of,
    days_between,
    plan_backfill,
    run_backfill,
)
from agents.compute.rebuild import RebuildOptions, RebuildResult, options_from_settings, run_rebuild
from agents.compute.skew import Skew
from agents.context import Headers
from agents.core.errors import InvalidMessage
from agents.core.records import is_future
from agents.rebuild_agent import publish_rebuild, publish_rows
from agents.store import open_reader, open_store
from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.cli.output import (
    emit_json,
    print_table,
    require_database,
    timestamp_arg,
    utc_time,
)
from streams.cli.status import EXIT_FAILURE, EXIT_OK
from streams.producer import started_producer
from streams.progress import Progress

__all__ = ["AiokafkaSender", "backfill_range", "command_rebuild", "day_arg"]

Rows = Sequence[tuple[Any, ...]]


@dataclass(frozen=True)
class AiokafkaSender:
    """The rebuild agent's `Sender` over a started aiokafka producer (`started_producer`)."""

    producer: AIOKafkaProducer

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[Any]:
        receipt: Awaitable[Any] = await self.producer.send(
            topic, value, key=key, partition=partition, headers=list(headers or ()) or None
        )
        return receipt


async def _publish_and_mark(bootstrap: str, settings: Settings, result: RebuildResult) -> None:
    """What the worker's daily rebuild does after computing (`publish_rebuild`), standalone."""
    async with started_producer(bootstrap, settings, "rebuild") as producer:
        store = await open_store(settings.database)
        try:
            await publish_rebuild(result, AiokafkaSender(producer), store, settings.topics.features)
        finally:
            await store.close()


def command_rebuild(args: argparse.Namespace) -> int:
    """Run the rebuild, publish its 30-day rows unless --no-publish, print the summary."""
    settings = load_settings(args.config)
    if args.status or args.distributed:
        # Imported here: the module builds on this one's sender.
        from streams.cli.rebuild_runs import command_distributed, command_status

        return (command_status if args.status else command_distributed)(args, settings)
    if args.from_day is not None or args.to_day is not None:
        return _command_backfill(args, settings)
    for given, option in ((args.force, "--force"), (args.dry_run, "--dry-run")):
        if given:
            raise InvalidMessage(option, "only for a backfill: give --from DATE --to DATE")
    as_of = timestamp_arg(args.as_of, "--as-of")
    require_database(settings)
    if is_future(as_of, time.time()):
        warn(f"--as-of {utc_time(as_of)} is in the future: its windows hold no trades yet")
    options = options_from_settings(settings, as_of, computed_at=time.time())
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

        # Outside any event loop, so that Ctrl-C interrupts the computation itself.
        result = run_rebuild(settings.database.url, options, report)
        progress.finish(result.wallets)
        if bootstrap is not None:
            asyncio.run(_publish_and_mark(bootstrap, settings, result))
    if result.wallets == 0:
        days = max(options.windows)
        warn(f"no wallet has a trade in the {days} days up to {utc_time(as_of)}: nothing rebuilt")
    summary = result.summary()
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return EXIT_FAILURE if result.failed_wallets else EXIT_OK


def warn(message: str) -> None:
    print(f"personas rebuild: warning: {message}", file=sys.stderr)


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
    if summary.get("skew") is not None:
        print(f"  skew (on-demand rows of the day against their recomputation): "
              f"{Skew.from_dict(summary['skew']).line()}")  # fmt: skip
    if summary["fallback_shards"]:
        print(f"  shards recomputed serially: {summary['fallback_shards']}", file=sys.stderr)
    if summary["failed_wallets"]:
        print(f"  wallets that failed: {', '.join(summary['failed_wallets'])}", file=sys.stderr)


# --- backfill: --from DATE --to DATE ------------------------------------------------------------


def day_arg(text: str, option: str) -> date:
    """A day on the command line: YYYY-MM-DD (a UTC day), or a time T, meaning its UTC day."""
    return datetime.fromtimestamp(timestamp_arg(text, option), UTC).date()


def backfill_range(first: str | None, last: str | None, now: float) -> tuple[date, date]:
    """The days `--from` … `--to`, checked: both given, not empty, every day ended by `now`."""
    if first is None or last is None:
        raise InvalidMessage(
            "--from" if first is None else "--to", "a backfill needs both --from and --to"
        )
    start, end = day_arg(first, "--from"), day_arg(last, "--to")
    if end < start:
        raise InvalidMessage("--to", f"{end} is before --from {start}: the range is empty")
    today = datetime.fromtimestamp(now, UTC).date()
    for day, option in ((start, "--from"), (end, "--to")):
        if day >= today:
            when = "is today" if day == today else "is in the future"
            raise InvalidMessage(
                option,
                f"{day} {when}: a day is backfilled as of its end, once it has ended (the last "
                f"day that has, in UTC, is {today - timedelta(days=1)}; `personas rebuild` "
                "rebuilds today as of now)",
            )
    return start, end


@contextlib.contextmanager
def _day_publisher(bootstrap: str, settings: Settings) -> Iterator[Callable[[Rows], int]]:
    """A producer kept open for the whole backfill, sending one day's rows per call."""
    with asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()
        producer = runner.run(
            stack.enter_async_context(started_producer(bootstrap, settings, "rebuild"))
        )
        sender = AiokafkaSender(producer)

        def publish(rows: Rows) -> int:
            return runner.run(publish_rows(rows, sender, settings.topics.features))

        try:
            yield publish
        finally:
            runner.run(stack.aclose())


def _command_backfill(args: argparse.Namespace, settings: Settings) -> int:
    if args.as_of is not None:
        raise InvalidMessage(
            "--as-of", "not with --from/--to: a backfill rebuilds each day as of its end"
        )
    first, last = backfill_range(args.from_day, args.to_day, time.time())
    days = days_between(first, last)
    # One computed_at for every day of the backfill (`RebuildOptions.computed_at`).
    options = options_from_settings(settings, day_as_of(last), computed_at=time.time())
    if args.dry_run:
        return _dry_run(args, settings, days, options)
    require_database(settings)
    with contextlib.ExitStack() as stack:
        publish = None
        if not args.no_publish:
            # As for one day: fail before computing, and never start a broker of our own.
            bootstrap = stack.enter_context(broker_for(settings, start_embedded=False))
            publish = stack.enter_context(_day_publisher(bootstrap, settings))
        progress = Progress("backfill", 0, enabled=not args.json, noun="wallet-days")

        def report(at: BackfillProgress) -> None:
            progress.label, progress.total = f"days {at.days_done}/{at.days}", at.wallets
            progress.update(at.wallets_done)

        result = run_backfill(
            settings.database.url, days, options, force=args.force, publish=publish,
            progress=report,
        )  # fmt: skip
        progress.finish(sum(day.wallets for day in result.days if day.action is Action.COMPUTE))
    summary = result.summary()
    idle = [
        d["feature_date"]
        for d in summary["per_day"]
        if d["action"] == "compute" and not d["wallets"]
    ]
    if idle:
        warn(f"{len(idle)} days had no wallet with a trade in their windows (first: {idle[0]})")
    if args.json:
        emit_json(summary)
    else:
        _print_backfill(summary)
    return EXIT_FAILURE if result.failed else EXIT_OK


def _dry_run(
    args: argparse.Namespace, settings: Settings, days: Sequence[date], options: RebuildOptions
) -> int:
    database = require_database(settings)
    # Read-only, and no migration: a dry run changes nothing, not even the schema.
    with contextlib.closing(open_reader(database, settings.database.busy_timeout_ms)) as conn:
        plan = plan_backfill(conn, days, options, force=args.force, publish=not args.no_publish)
    counts = {action: sum(day.action is action for day in plan) for action in Action}
    wallet_days = sum(day.wallets for day in plan if day.action is Action.COMPUTE)
    if args.json:
        emit_json({
            "dry_run": True, "from": days[0].isoformat(), "to": days[-1].isoformat(),
            "days": len(plan), **{str(action): n for action, n in counts.items()},
            "wallets": wallet_days,
            "per_day": [{"feature_date": d.feature_date, "as_of": d.as_of, "wallets": d.wallets,
                         "action": str(d.action)} for d in plan],
        })  # fmt: skip
        return EXIT_OK
    print(f"backfill {days[0]} … {days[-1]}: {len(plan)} days (dry run: nothing is written)")
    print_table(
        ("feature_date", "as_of", "wallets", "action"),
        ((d.feature_date, d.as_of, f"{d.wallets:,}", d.action) for d in plan),
        left=("feature_date", "action"),
    )
    print(
        f"  compute {counts[Action.COMPUTE]} days ({wallet_days:,} wallet-days), publish "
        f"{counts[Action.PUBLISH]} already written, skip {counts[Action.SKIP]} done"
    )
    return EXIT_OK


def _print_backfill(summary: dict[str, Any]) -> None:
    print(
        f"backfill {summary['from']} … {summary['to']} ({summary['days']} days): "
        f"{summary['computed']} computed, {summary['skipped']} skipped (done), "
        f"{summary['published_only']} published only\n"
        f"  {summary['wallets']:,} wallet-days, {summary['rows_written']:,} rows written, "
        f"{summary['published']:,} published in {summary['duration_s']:.1f}s: "
        f"{summary['s_per_day']:.2f}s per day, {summary['wallets_per_s']:,.0f} wallet-days/s "
        f"({summary['workers'] or 'serial'} workers, {summary['days_per_pass']} days per pass)"
    )
    if summary["fallback_shards"]:
        print(f"  shards recomputed serially: {summary['fallback_shards']}", file=sys.stderr)
    for day, wallets in summary["failed_wallets"].items():
        print(f"  {day}: wallets that failed (day not recorded): {', '.join(wallets)}",
              file=sys.stderr)  # fmt: skip
