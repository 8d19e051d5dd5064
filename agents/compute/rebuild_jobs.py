"""The rebuild spread over the workers, off the event loop: plan a run, compute a batch of jobs.

`start_run` lists the active wallets (as `run_rebuild` does), cuts them into jobs and records the
run, before the leader publishes the jobs. A worker
given a batch of jobs computes them with the same shard machinery as one host
(`agents.compute.shards.run_shards`, its reader processes), measures the day's online/offline
skew of the shards' wallets, and then writes every row and checkpoint `source=batch` in one
transaction: the rows one host's `run_rebuild` with the same options writes. Once their
FeatureSets are published, `record_done` records the shards (and, with the last, the run's end).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.compute.rebuild import (
    WINDOW_DAYS_COLUMN,
    RebuildOptions,
    ShardJob,
    ShardResult,
    active_wallets,
    write_rows,
)
from agents.compute.shards import run_shards
from agents.compute.skew import Skew, measure_skew
from agents.core.features import feature_date
from agents.core.rebuild_jobs import RebuildJob, cut_jobs
from agents.store import Connection, connect, migrate
from agents.store.job_runs import JobRun, ShardDone, job_run, record_shards, start_job_run
from config.settings import RuleSettings

__all__ = ["ComputedJob", "compute_jobs", "record_done", "start_run"]


def start_run(
    database: Path | str, options: RebuildOptions, run_id: str, started_by: str, started_at: float
) -> list[RebuildJob]:
    """Record a run of every wallet active at `options.as_of`; return its jobs, to publish."""
    computed_at = options.computed_at
    if computed_at is None:
        raise ValueError("a run spread over workers needs one computed_at for all its shards")
    with closing(connect(database, options.busy_timeout_ms)) as conn:
        migrate(conn)
        wallets = active_wallets(conn, options.as_of, max(options.windows))
        jobs = cut_jobs(
            run_id, wallets, options.shard_wallets, as_of=options.as_of,
            computed_at=computed_at, windows=options.windows,
            publish_window=options.publish_window,
        )  # fmt: skip
        start_job_run(
            conn, run_id, feature_date(options.as_of), options.as_of, len(jobs), len(wallets),
            started_at, started_by,
        )  # fmt: skip
    return jobs


def _skew(conn: Connection, job: RebuildJob, rules: RuleSettings) -> Skew:
    return measure_skew(conn, job.wallets, feature_date(job.as_of), job.publish_window, rules)


def record_done(
    database: Path | str, busy_timeout_ms: int, done: Sequence[ShardDone], now: float
) -> tuple[list[str], list[JobRun]]:
    """Record shards written and published; the runs this finished, and each run as it stands."""
    with closing(connect(database, busy_timeout_ms)) as conn:
        finished = record_shards(conn, done, now)
        runs = [job_run(conn, run_id) for run_id in sorted({shard.run_id for shard in done})]
    return finished, [run for run in runs if run is not None]


@dataclass
class ComputedJob:
    """One job's shard, written: its rows (the publish window's to send) and its skew."""

    job: RebuildJob
    shard: ShardResult
    skew: Skew

    @property
    def rows_to_publish(self) -> list[tuple[Any, ...]]:
        window = self.job.publish_window
        return [row for row in self.shard.rows if row[WINDOW_DAYS_COLUMN] == window]


def compute_jobs(
    database: Path | str,
    jobs: Sequence[RebuildJob],
    *,
    parallel: bool,
    workers: int,
    busy_timeout_ms: int,
    rules: RuleSettings,
) -> list[ComputedJob]:
    """Compute `jobs` (each once, if a batch repeats one), measure their skew, then write them.

    Rows are upserted `source=batch` with the shards' checkpoints in one transaction, after the
    skew is read: the batch rows replace the on-demand rows it compares.
    """
    unique = list({(job.run_id, job.shard): job for job in jobs}.values())
    # Indexed by position: shards of two runs in one batch may share a shard number.
    shard_jobs = [
        ShardJob(n, job.wallets, (job.as_of,), job.windows, job.computed_at)
        for n, job in enumerate(unique)
    ]
    with closing(connect(database, busy_timeout_ms)) as conn:
        migrate(conn)
        shards, _ = run_shards(
            conn, database, shard_jobs, parallel=parallel, workers=workers,
            busy_timeout_ms=busy_timeout_ms,
        )  # fmt: skip
        computed = [
            ComputedJob(job, shard, _skew(conn, job, rules))
            for job, shard in zip(unique, shards, strict=True)
        ]
        rows = [row for shard in shards for row in shard.rows]
        checkpoints = [row for shard in shards for row in shard.checkpoints]
        write_rows(conn, rows, None, checkpoints)
    return computed
