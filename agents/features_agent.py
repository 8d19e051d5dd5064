"""Feature agent: `wallet-discovered` → 30-day features on demand → `wallet-features` (SPEC §7).

Discoveries are taken in batches and computed in the feature processes (`FeaturePool`), in jobs
read with one query each, at most `features.concurrency` discoveries at once. A batch is
acknowledged only after every FeatureSet of it is delivered to the broker and the wallets are
recorded, so an offset is never committed past a discovery that has not finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import faust
from faust.types import EventT

from agents.feature_pool import FeaturePool
from agents.on_demand import Discovery, OnDemandJob, Outcome
from streams.codec import decode
from streams.errors import InvalidMessage
from streams.records import WalletDiscovered
from streams.runtime import Runtime, acknowledge, event_batches

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["FeatureComputeError", "job_size", "register"]

log = logging.getLogger("personas.features")

# Jobs queued per process: one computing, one waiting, so no process idles between jobs.
JOBS_PER_PROCESS = 2


class FeatureComputeError(RuntimeError):
    """Computing one wallet's features failed; the discovery is dead-lettered with the reason."""


def job_size(concurrency: int, processes: int) -> int:
    """Discoveries per job, so that the jobs in flight hold at most `concurrency` discoveries."""
    return max(1, concurrency // (JOBS_PER_PROCESS * processes))


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    config, metrics = runtime.settings.features, runtime.metrics
    per_job = job_size(config.concurrency, config.process_count)
    slots = asyncio.Semaphore(max(1, config.concurrency // per_job))

    async def compute(pool: FeaturePool, discoveries: Sequence[Discovery]) -> list[Outcome]:
        job = OnDemandJob(tuple(discoveries), config.window_days, config.min_settled_trades)
        async with slots:
            return await pool.compute(job)

    @app.agent(topics.discovered, name="features")
    async def features(stream: faust.StreamT[bytes]) -> None:
        pool = await runtime.feature_pool()
        async for events in event_batches(stream, config.batch_max, config.batch_within_s):
            accepted: list[tuple[EventT[bytes], WalletDiscovered]] = []
            rejected: list[tuple[EventT[bytes], BaseException]] = []
            for event in events:
                try:
                    accepted.append((event, decode(WalletDiscovered, event.value)))
                except InvalidMessage as exc:
                    rejected.append((event, exc))
            discoveries = [Discovery(d.proxy_wallet, d.discovered_at) for _, d in accepted]
            jobs = await asyncio.gather(*(
                compute(pool, discoveries[start : start + per_job])
                for start in range(0, len(discoveries), per_job)
            ))  # fmt: skip
            outcomes = [outcome for job in jobs for outcome in job]
            deliveries, rows, insufficient = [], [], 0
            now = time.time()
            for (event, discovery), outcome in zip(accepted, outcomes, strict=True):
                wallet = discovery.proxy_wallet
                metrics.on_demand_duration.observe(outcome.seconds)
                if outcome.error is not None:
                    rejected.append((event, FeatureComputeError(f"{wallet}: {outcome.error}")))
                    continue
                if outcome.features is None:
                    insufficient += 1
                    log.warning(
                        "insufficient data for %s: %d settled trades in %d days (< %d); "
                        "the daily rebuild will pick it up",
                        wallet, outcome.round_trips, config.window_days, config.min_settled_trades,
                    )  # fmt: skip
                else:
                    deliveries.append(
                        await topics.features.send(key=wallet.encode(), value=outcome.features)
                    )
                status = "insufficient" if outcome.features is None else "success"
                rows.append((wallet, discovery.discovered_at, discovery.source, now, status, now))
            await asyncio.gather(*deliveries)
            store = await runtime.store()
            await runtime.retry("features-record", store.record_wallets, rows)
            await runtime.dead_letter_all(rejected)
            metrics.on_demand_features.labels("success").inc(len(deliveries))
            metrics.on_demand_features.labels("insufficient").inc(insufficient)
            metrics.on_demand_features.labels("error").inc(len(rejected))
            await acknowledge(stream, events)
            runtime.health.progressed("features")
