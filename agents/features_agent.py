"""Feature agent: `wallet-discovered` → 30-day features on demand → `wallet-features` (SPEC §7).

Each batch of discoveries is cut into jobs that `OnDemandCompute` runs (in the worker: the
feature processes of `agents.compute.feature_pool`, one query per job), at most
`features.concurrency` discoveries at once. The jobs start as soon as the batch is fetched, beside
the previous batch's publishing. The batch is done once every FeatureSet of it is delivered to the
broker and the wallets are recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from agents.compute.on_demand import Discovery, OnDemandJob, Outcome
from agents.context import AgentContext, Message, Rejected, decode_each
from agents.core.errors import InvalidMessage
from agents.core.records import WalletDiscovered, check_not_future

__all__ = ["STAGE", "FeatureComputeError", "OnDemandCompute", "handle", "job_size", "jobs_at_once"]

log = logging.getLogger("personas.features")

STAGE = "features"
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


@dataclass
class OnDemandCompute:
    """Runs on-demand jobs of `per_job` discoveries, at most `concurrency` discoveries at once."""

    run: Callable[[OnDemandJob], Awaitable[list[Outcome]]]
    concurrency: int
    processes: int
    per_job: int = field(init=False)
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.per_job = job_size(self.concurrency, self.processes)
        self._slots = asyncio.Semaphore(jobs_at_once(self.concurrency, self.per_job))

    async def __call__(self, job: OnDemandJob) -> list[Outcome]:
        async with self._slots:
            return await self.run(job)


def handle(
    batch: Sequence[Message], context: AgentContext, compute: OnDemandCompute
) -> Awaitable[None]:
    """Decode and start the jobs now; the awaitable publishes and records the outcomes."""
    config = context.settings.features
    now, size = context.clock(), compute.per_job
    accepted, rejected = _decode(batch, now)
    discoveries = [Discovery(d.proxy_wallet, d.discovered_at) for _, d in accepted]
    computing = [
        asyncio.ensure_future(
            compute(
                OnDemandJob(
                    tuple(discoveries[start : start + size]),
                    config.window_days,
                    config.min_settled_trades,
                    computed_at=now,
                )
            )
        )
        for start in range(0, len(discoveries), size)
    ]
    return _publish(accepted, rejected, computing, context, fetched_at=now)


def _decode(
    batch: Sequence[Message], now: float
) -> tuple[list[tuple[Message, WalletDiscovered]], list[Rejected]]:
    """Valid discoveries; a discovery from the future would read trades not yet made."""
    decoded, rejected = decode_each(WalletDiscovered, batch)
    accepted = []
    for message, discovery in decoded:
        try:
            check_not_future("discovered_at", discovery.discovered_at, now)
        except InvalidMessage as exc:
            rejected.append((message, exc))
            continue
        accepted.append((message, discovery))
    return accepted, rejected


async def _publish(
    accepted: list[tuple[Message, WalletDiscovered]],
    rejected: list[Rejected],
    computing: Sequence[Awaitable[list[Outcome]]],
    context: AgentContext,
    *,
    fetched_at: float,
) -> None:
    settings, metrics = context.settings, context.metrics
    outcomes = [outcome for job in await asyncio.gather(*computing) for outcome in job]
    receipts, rows, insufficient, invalid = [], [], 0, len(rejected)
    now = context.clock()
    for (message, discovery), outcome in zip(accepted, outcomes, strict=True):
        wallet = discovery.proxy_wallet
        metrics.on_demand_duration.observe(outcome.seconds)
        _observe_hops(outcome, fetched_at, context)
        if outcome.error is not None:
            rejected.append((message, FeatureComputeError(f"{wallet}: {outcome.error}")))
            continue
        if outcome.features is not None:
            status = "success"
            receipts.append(
                await context.sender.send(
                    settings.topics.features, wallet.encode(), outcome.features
                )
            )
        else:
            status = "insufficient"
            insufficient += 1
            _log_insufficient(wallet, outcome, context)
        rows.append((wallet, discovery.discovered_at, discovery.source, now, status, now))
    await asyncio.gather(*receipts)
    await context.retry("features-record", context.store.record_wallets, rows)
    await context.dead_letter(rejected)
    metrics.on_demand_features.labels("success").inc(len(receipts))
    metrics.on_demand_features.labels("insufficient").inc(insufficient)
    metrics.on_demand_features.labels("rejected").inc(invalid)
    metrics.on_demand_features.labels("error").inc(len(rejected) - invalid)


def _observe_hops(outcome: Outcome, fetched_at: float, context: AgentContext) -> None:
    """The feature agent's hops of the latency breakdown, for a job run in a process."""
    if not outcome.job_started_at:  # not computed in a process (a retried, dead process)
        return
    hops = context.metrics.on_demand_hops
    hops.labels("queued").observe(max(0.0, outcome.job_started_at - fetched_at))
    hops.labels("computed").observe(outcome.job_finished_at - outcome.job_started_at)
    hops.labels("published").observe(max(0.0, context.clock() - outcome.job_finished_at))


def _log_insufficient(wallet: str, outcome: Outcome, context: AgentContext) -> None:
    config = context.settings.features
    log.warning(
        "insufficient data for %s: %d settled trades in %d days (< %d); "
        "the daily rebuild will pick it up",
        wallet, outcome.round_trips, config.window_days, config.min_settled_trades,
    )  # fmt: skip
