"""Rebuild jobs: the daily rebuild spread over every worker of the group (SPEC §9).

The leader starts a run (`start_run`): it cuts the active wallets into shards, records the run
and publishes one job per shard on `rebuild-jobs`. Every worker consumes that topic in the group
`<app_id>-rebuild` (`handle`): it computes the shards it is given with its reader processes,
writes their rows `source=batch`, publishes their 30-day FeatureSets to `wallet-features`, and
records them done; the consumer commits the jobs only after that. A worker that dies mid-shard
leaves its jobs uncommitted: they are redelivered to another worker, which writes the same rows.
The worker that records a run's last shard finishes it, once (`agents.store.job_runs`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from functools import partial

from agents.compute.rebuild import options_from_settings
from agents.compute.rebuild_jobs import ComputedJob, compute_jobs, record_done
from agents.compute.rebuild_jobs import start_run as record_run
from agents.compute.skew import Skew
from agents.context import AgentContext, Message, Rejected, Sender, decode_each, worker_name
from agents.core.codec import encode
from agents.core.rebuild_jobs import RebuildJob, deal, job_key
from agents.metrics import AgentMetrics
from agents.rebuild_agent import publish_rows
from agents.store.job_runs import JobRun, ShardDone
from config.settings import Settings

__all__ = ["STAGE", "StartedRun", "handle", "run_skew", "show_run", "start_run"]

log = logging.getLogger("personas.rebuild")

STAGE = "rebuild"


@dataclass(frozen=True)
class StartedRun:
    """A run the leader started: its id, and its jobs, published."""

    run_id: str
    as_of: int
    jobs: tuple[RebuildJob, ...]

    @property
    def wallets(self) -> int:
        return sum(len(job.wallets) for job in self.jobs)


async def start_run(
    settings: Settings,
    sender: Sender,
    as_of: int,
    computed_at: float,
    started_by: str,
    *,
    weights: Sequence[float],
) -> StartedRun:
    """Record a run of every wallet active at `as_of` and publish its jobs (receipts awaited),
    dealt over the partitions of the jobs topic in proportion to `weights`, one per partition it
    has on the broker (`streams.dealing.job_weights`)."""
    if not weights:
        raise ValueError(f"topic {settings.topics.rebuild_jobs} has no partitions on the broker")
    options = options_from_settings(settings, as_of, computed_at=computed_at)
    run_id = uuid.uuid4().hex[:16]
    jobs = await asyncio.to_thread(
        record_run, settings.database.url, options, run_id, started_by, computed_at
    )
    topic = settings.topics.rebuild_jobs
    # Dealt, not hashed: each worker gets its share of the shards, and the run ends when the
    # most loaded one is done (hashing gave one of two workers 49 of 80).
    dealt = deal(len(jobs), weights)
    receipts = [
        await sender.send(topic, job_key(job), encode(job), partition=partition)
        for job, partition in zip(jobs, dealt, strict=True)
    ]
    await asyncio.gather(*receipts)
    log.info(
        "rebuild run %s started: as_of %d, %d wallets in %d shards on %s (shards by partition: %s)",
        run_id, as_of, sum(len(job.wallets) for job in jobs), len(jobs), topic,
        " ".join(str(dealt.count(p)) for p in range(len(weights))),
    )  # fmt: skip
    return StartedRun(run_id, as_of, tuple(jobs))


def handle(batch: Sequence[Message], context: AgentContext) -> Awaitable[None]:
    """Decode the jobs; the awaitable computes, writes, publishes and records them."""
    accepted, rejected = decode_each(RebuildJob, batch)
    return _run([job for _, job in accepted], rejected, context)


async def _run(jobs: list[RebuildJob], rejected: list[Rejected], context: AgentContext) -> None:
    if jobs:
        await _compute_publish_record(jobs, context)
    await context.dead_letter(rejected)


async def _compute_publish_record(jobs: list[RebuildJob], context: AgentContext) -> None:
    settings, metrics = context.settings, context.metrics
    database, rebuild = settings.database, settings.rebuild
    started = time.perf_counter()
    compute = partial(
        compute_jobs, database.url, jobs, parallel=rebuild.parallel_enabled,
        workers=rebuild.worker_count, busy_timeout_ms=database.busy_timeout_ms,
        rules=settings.rules,
    )  # fmt: skip
    # Processes do the work; a thread waits for them so the event loop keeps serving.
    computed: list[ComputedJob] = await context.retry("rebuild-compute", asyncio.to_thread, compute)
    rows = [row for job in computed for row in job.rows_to_publish]
    await context.retry(
        "rebuild-publish", publish_rows, rows, context.sender, settings.topics.features
    )
    now, worker = context.clock(), worker_name()
    done = [_shard_done(c, worker, now) for c in computed]
    record = partial(record_done, database.url, database.busy_timeout_ms, done, now)
    finished, runs = await context.retry("rebuild-record", asyncio.to_thread, record)
    metrics.rebuild_shards_computed.inc(len(done))
    took = time.perf_counter() - started
    for c in computed:
        log.info(
            "rebuild run %s: shard %d of %d done here (%d wallets, %.2fs for the batch); skew: %s",
            c.job.run_id, c.job.shard + 1, c.job.shards, c.shard.wallets, took, c.skew.line(),
        )  # fmt: skip
        if c.shard.failed:
            log.error("rebuild run %s: shard %d: %d wallets failed, the day will not be recorded",
                      c.job.run_id, c.job.shard + 1, len(c.shard.failed))  # fmt: skip
    for run in runs:
        show_run(metrics, run)
        if run.run_id in finished:
            _finished(metrics, run)


def _shard_done(computed: ComputedJob, worker: str, now: float) -> ShardDone:
    job, shard = computed.job, computed.shard
    return ShardDone(
        job.run_id, job.shard, shard.wallets, len(shard.rows), len(shard.failed),
        computed.skew.as_dict(), worker, now,
    )  # fmt: skip


def run_skew(run: JobRun) -> Skew:
    """The skew report of the run's shards recorded so far."""
    skew = Skew()
    for shard in run.done:
        skew.add(Skew.from_dict(shard.skew))
    return skew


def show_run(metrics: AgentMetrics, run: JobRun) -> None:
    """The run's progress in the metrics, unless a later run is shown already."""
    if run.started_at < metrics.rebuild_run_started._value.get():
        return
    metrics.rebuild_run_started.set(run.started_at)
    metrics.rebuild_run_finished.set(run.finished_at or 0)
    metrics.rebuild_run_shards.labels("done").set(run.shards_done)
    metrics.rebuild_run_shards.labels("total").set(run.shards)
    metrics.rebuild_run_wallets.labels("done").set(run.wallets_done)
    metrics.rebuild_run_wallets.labels("total").set(run.wallets)
    skew = run_skew(run)
    metrics.rebuild_skew_wallets.labels("compared").set(skew.compared)
    metrics.rebuild_skew_wallets.labels("differing").set(skew.differing)
    metrics.rebuild_skew_wallets.labels("classification_changed").set(skew.classification_changed)
    metrics.rebuild_skew_feature_wallets.clear()
    for feature, wallets in skew.by_feature.items():
        metrics.rebuild_skew_feature_wallets.labels(feature).set(wallets)


def _finished(metrics: AgentMetrics, run: JobRun) -> None:
    took = (run.finished_at or run.started_at) - run.started_at
    metrics.rebuild_duration.set(took)
    metrics.rebuild_wallets.set(run.wallets_done)
    metrics.rebuild_rows.set(run.rows_written)
    workers = ", ".join(f"{name} {n}" for name, n in run.shards_by_worker().items())
    if run.failed:
        log.error(
            "rebuild run %s finished with %d wallets failed: day %s not recorded",
            run.run_id, run.failed, run.feature_date,
        )  # fmt: skip
    else:
        metrics.rebuild_last_success.set(run.finished_at or time.time())
        log.info(
            "rebuild run %s finished: day %s recorded, %d wallets, %d rows, %d shards in %.1fs "
            "(shards by worker: %s); skew: %s",
            run.run_id, run.feature_date, run.wallets_done, run.rows_written, run.shards, took,
            workers, run_skew(run).line(),
        )  # fmt: skip
