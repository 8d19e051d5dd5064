"""`personas rebuild --distributed` starts a rebuild spread over the workers; `--status` shows
the last (or current) one: its day, shards done, wallets, times, workers and skew."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from agents.compute.skew import Skew
from agents.context import worker_name
from agents.core.errors import InvalidMessage
from agents.rebuild_jobs_agent import StartedRun, run_skew, start_run
from agents.store.job_runs import JobRun, latest_job_run
from config.settings import Settings
from streams.broker import broker_for
from streams.cli.output import (
    emit_json,
    open_existing,
    require_database,
    timestamp_arg,
    utc_time,
)
from streams.cli.rebuild import AiokafkaSender
from streams.cli.status import EXIT_OK
from streams.dealing import job_weights
from streams.producer import started_producer
from streams.topics import ensure_topics

__all__ = ["command_distributed", "command_status", "run_summary"]


def _refuse(command: str, given: dict[str, object]) -> None:
    for option, value in given.items():
        if value not in (None, False):
            raise InvalidMessage(option, f"not with {command}")


def command_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the last rebuild run started on the workers, as it stands now."""
    _refuse("--status", {
        "--as-of": args.as_of, "--from": args.from_day, "--to": args.to_day,
        "--no-publish": args.no_publish, "--force": args.force, "--dry-run": args.dry_run,
        "--distributed": args.distributed,
    })  # fmt: skip
    with contextlib.closing(open_existing(settings)) as conn:
        run = latest_job_run(conn)
    if run is None:
        if args.json:
            emit_json({"run_id": None})
        else:
            print("no rebuild has been started on the workers yet (`personas rebuild "
                  "--distributed` starts one; the leader starts one daily)")  # fmt: skip
        return EXIT_OK
    summary = run_summary(run)
    if args.json:
        emit_json(summary)
    else:
        _print_status(summary)
    return EXIT_OK


def run_summary(run: JobRun) -> dict[str, Any]:
    """A run as `--status --json` prints it."""
    took = None if run.finished_at is None else run.finished_at - run.started_at
    return {
        "run_id": run.run_id,
        "state": "finished" if run.finished_at is not None else "running",
        "feature_date": run.feature_date,
        "as_of": run.as_of,
        "shards": run.shards,
        "shards_done": run.shards_done,
        "wallets": run.wallets,
        "wallets_done": run.wallets_done,
        "rows_written": run.rows_written,
        "failed_wallets": run.failed,
        "started_at": run.started_at,
        "started_by": run.started_by,
        "finished_at": run.finished_at,
        "duration_s": None if took is None else round(took, 3),
        "shards_by_worker": run.shards_by_worker(),
        "skew": run_skew(run).as_dict(),
    }


def _print_status(summary: dict[str, Any]) -> None:
    took = summary["duration_s"]
    print(
        f"rebuild run {summary['run_id']} ({summary['state']}): day {summary['feature_date']}, "
        f"as_of {summary['as_of']}\n"
        f"  shards {summary['shards_done']}/{summary['shards']}, wallets "
        f"{summary['wallets_done']:,}/{summary['wallets']:,}, {summary['rows_written']:,} rows, "
        f"{summary['failed_wallets']} wallets failed\n"
        f"  started {utc_time(summary['started_at'])} by {summary['started_by']}, finished "
        f"{utc_time(summary['finished_at'])}" + ("" if took is None else f" ({took:.1f}s)")
    )
    for worker, shards in summary["shards_by_worker"].items():
        print(f"  {worker}: {shards} shard{'' if shards == 1 else 's'}")
    skew = Skew.from_dict(summary["skew"])
    print(f"  skew: {skew.line()}")
    for change in skew.changes:
        print(f"    {change['wallet']}: {change['then']} → {change['now']}")


def command_distributed(args: argparse.Namespace, settings: Settings) -> int:
    """Start a run now: record it and publish its jobs; the workers compute it."""
    _refuse("--distributed", {
        "--from": args.from_day, "--to": args.to_day, "--no-publish": args.no_publish,
        "--force": args.force, "--dry-run": args.dry_run,
    })  # fmt: skip
    as_of = timestamp_arg(args.as_of, "--as-of")
    require_database(settings)
    with broker_for(settings, start_embedded=False) as bootstrap:
        started = asyncio.run(_start(bootstrap, settings, as_of))
    summary = {
        "run_id": started.run_id, "as_of": started.as_of, "shards": len(started.jobs),
        "wallets": started.wallets, "topic": settings.topics.rebuild_jobs,
    }  # fmt: skip
    if args.json:
        emit_json(summary)
    else:
        print(
            f"rebuild run {started.run_id} started: as_of {as_of}, {started.wallets:,} wallets "
            f"in {len(started.jobs)} shards on {settings.topics.rebuild_jobs}; the workers "
            "compute them (`personas rebuild --status` follows the run)"
        )
    return EXIT_OK


async def _start(bootstrap: str, settings: Settings, as_of: int) -> StartedRun:
    await ensure_topics(bootstrap, settings)  # as the publish commands do before sending
    weights = await job_weights(bootstrap, settings)
    async with started_producer(bootstrap, settings, "rebuild") as producer:
        now = time.time()
        return await start_run(
            settings, AiokafkaSender(producer), as_of, now, f"personas rebuild {worker_name()}",
            weights=weights,
        )  # fmt: skip
