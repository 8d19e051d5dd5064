"""Feature agent: `wallet-discovered` → 30-day features on demand → `wallet-features` (SPEC §7).

Each batch of discoveries is cut into jobs that `OnDemandCompute` runs (in the worker: the
feature processes of `agents.compute.feature_pool`, one query per job), at most
`features.concurrency` discoveries at once. The jobs start as soon as the batch is fetched, and
each job's FeatureSets are sent as soon as it is done (in order, after the previous batch's), so
a discovery does not wait for the slowest job of its batch, nor for the previous batch's commit.
The batch is done once every FeatureSet of it is delivered to the broker and the wallets are
recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

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
    #: the last batch's sending: the next batch sends after it (`handle`)
    sending: asyncio.Future[_Sent] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.per_job = job_size(self.concurrency, self.processes)
        self._slots = asyncio.Semaphore(jobs_at_once(self.concurrency, self.per_job))

    async def __call__(self, job: OnDemandJob) -> list[Outcome]:
        async with self._slots:
            return await self.run(job)


def handle(
    batch: Sequence[Message], context: AgentContext, compute: OnDemandCompute
) -> Awaitable[None]:
    """Decode and start the jobs now, and send each job's FeatureSets as soon as it is done (after
    the previous batch's); the awaitable waits for the receipts and records the outcomes."""
    config = context.settings.features
    now, size = context.clock(), compute.per_job
    accepted, rejected = _decode(batch, now)
    jobs: list[_Job] = []
    for start in range(0, len(accepted), size):
        chunk = accepted[start : start + size]
        job = OnDemandJob(
            tuple(Discovery(d.proxy_wallet, d.discovered_at) for _, d in chunk),
            config.window_days,
            config.min_settled_trades,
            computed_at=now,
        )
        jobs.append((chunk, asyncio.ensure_future(compute(job))))
    sending = asyncio.ensure_future(_send(jobs, compute.sending, context, fetched_at=now))
    compute.sending = sending
    return _record(sending, rejected, context)


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


#: A job's discoveries (with their messages) and its outcomes to come.
_Job: TypeAlias = tuple[list[tuple[Message, WalletDiscovered]], "asyncio.Future[list[Outcome]]"]


@dataclass
class _Sent:
    """What a batch's sending left to wait for and to record."""

    receipts: list[Awaitable[object]] = field(default_factory=list)
    rows: list[tuple[str, int, str, float, str, float]] = field(default_factory=list)
    failed: list[Rejected] = field(default_factory=list)
    insufficient: int = 0


async def _send(
    jobs: list[_Job],
    previous: asyncio.Future[_Sent] | None,
    context: AgentContext,
    *,
    fetched_at: float,
) -> _Sent:
    """Send each job's FeatureSets once it is done, in order, after the previous batch's."""
    if previous is not None:  # one wallet's FeatureSets stay in order across batches
        await asyncio.shield(previous)
    settings, metrics, sent = context.settings, context.metrics, _Sent()
    for chunk, job in jobs:
        outcomes = await job
        now = context.clock()
        for (message, discovery), outcome in zip(chunk, outcomes, strict=True):
            wallet = discovery.proxy_wallet
            metrics.on_demand_duration.observe(outcome.seconds)
            _observe_hops(outcome, fetched_at, context)
            if outcome.error is not None:
                sent.failed.append((message, FeatureComputeError(f"{wallet}: {outcome.error}")))
                continue
            if outcome.features is not None:
                status = "success"
                receipt = await context.sender.send(
                    settings.topics.features, wallet.encode(), outcome.features
                )
                sent.receipts.append(receipt)
            else:
                status = "insufficient"
                sent.insufficient += 1
                _log_insufficient(wallet, outcome, context)
            rows = sent.rows
            rows.append((wallet, discovery.discovered_at, discovery.source, now, status, now))
    return sent


async def _record(
    sending: asyncio.Future[_Sent], rejected: list[Rejected], context: AgentContext
) -> None:
    """Once the broker has the batch's FeatureSets: record the wallets, dead-letter the rest."""
    metrics = context.metrics
    sent = await sending
    await asyncio.gather(*sent.receipts)
    await context.retry("features-record", context.store.record_wallets, sent.rows)
    await context.dead_letter([*rejected, *sent.failed])
    metrics.on_demand_features.labels("success").inc(len(sent.receipts))
    metrics.on_demand_features.labels("insufficient").inc(sent.insufficient)
    metrics.on_demand_features.labels("rejected").inc(len(rejected))
    metrics.on_demand_features.labels("error").inc(len(sent.failed))


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
