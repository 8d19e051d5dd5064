"""Feature agent: `wallet-discovered` → 30-day features on demand → `wallet-features` (SPEC §7).

Each batch of discoveries is cut into jobs that the feature processes (`FeaturePool`) compute,
one query per job, at most `features.concurrency` discoveries at once. The jobs start as soon as
the batch is fetched, beside the previous batch's publishing. A batch's offsets are committed
only after every FeatureSet of it is delivered to the broker and the wallets are recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

import faust

from agents.on_demand import Discovery, OnDemandJob, Outcome
from streams.codec import decode
from streams.consumer import register_consumer
from streams.errors import InvalidMessage
from streams.records import WalletDiscovered
from streams.runtime import Record, Runtime

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["FeatureComputeError", "job_size", "jobs_at_once", "register"]

log = logging.getLogger("personas.features")

# Jobs queued per process: one computing, one waiting, so no process idles between jobs.
JOBS_PER_PROCESS = 2


class FeatureComputeError(RuntimeError):
    """Computing one wallet's features failed; the discovery is dead-lettered with the reason."""


def job_size(concurrency: int, processes: int) -> int:
    """Discoveries per job, so that the jobs in flight hold at most `concurrency` discoveries."""
    return max(1, concurrency // (JOBS_PER_PROCESS * processes))


def jobs_at_once(concurrency: int, per_job: int) -> int:
    """Jobs allowed in flight (at least one): together they hold ≤ `concurrency` discoveries."""
    return max(1, concurrency // per_job)


def register(app: faust.App, runtime: Runtime, topics: AppTopics, bootstrap: str) -> None:
    config, metrics = runtime.settings.features, runtime.metrics
    per_job = job_size(config.concurrency, config.process_count)
    slots = asyncio.Semaphore(jobs_at_once(config.concurrency, per_job))

    async def compute(discoveries: Sequence[Discovery]) -> list[Outcome]:
        job = OnDemandJob(tuple(discoveries), config.window_days, config.min_settled_trades)
        pool = await runtime.feature_pool()
        async with slots:
            # A database busy past its timeout is retried; any other read error stops the worker.
            return await runtime.retry("features-read", pool.compute, job)

    def handle(records: list[Record]) -> Awaitable[None]:
        accepted: list[tuple[Record, WalletDiscovered]] = []
        rejected: list[tuple[Record, BaseException]] = []
        for record in records:
            try:
                accepted.append((record, decode(WalletDiscovered, record.value)))
            except InvalidMessage as exc:
                rejected.append((record, exc))
        discoveries = [Discovery(d.proxy_wallet, d.discovered_at) for _, d in accepted]
        computing = [
            asyncio.ensure_future(compute(discoveries[start : start + per_job]))
            for start in range(0, len(discoveries), per_job)
        ]
        return publish(accepted, rejected, computing)

    async def publish(
        accepted: list[tuple[Record, WalletDiscovered]],
        rejected: list[tuple[Record, BaseException]],
        computing: Sequence[Awaitable[list[Outcome]]],
    ) -> None:
        outcomes = [outcome for job in await asyncio.gather(*computing) for outcome in job]
        deliveries, rows, insufficient = [], [], 0
        now = time.time()
        for (record, discovery), outcome in zip(accepted, outcomes, strict=True):
            wallet = discovery.proxy_wallet
            metrics.on_demand_duration.observe(outcome.seconds)
            if outcome.error is not None:
                rejected.append((record, FeatureComputeError(f"{wallet}: {outcome.error}")))
                continue
            if outcome.features is not None:
                status = "success"
                deliveries.append(
                    await runtime.send(topics.features, wallet.encode(), outcome.features)
                )
            else:
                status = "insufficient"
                insufficient += 1
                log.warning(
                    "insufficient data for %s: %d settled trades in %d days (< %d); "
                    "the daily rebuild will pick it up",
                    wallet, outcome.round_trips, config.window_days, config.min_settled_trades,
                )  # fmt: skip
            rows.append((wallet, discovery.discovered_at, discovery.source, now, status, now))
        await asyncio.gather(*deliveries)
        store = await runtime.store()
        await runtime.retry("features-record", store.record_wallets, rows)
        await runtime.dead_letter_all(rejected)
        metrics.on_demand_features.labels("success").inc(len(deliveries))
        metrics.on_demand_features.labels("insufficient").inc(insufficient)
        metrics.on_demand_features.labels("error").inc(len(rejected))

    register_consumer(app, runtime, "features", topics.discovered, bootstrap, handle, config)
