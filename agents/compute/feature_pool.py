"""Processes that compute on-demand features beside the worker's event loop.

Reading a wallet's trades and running the kernel is most of a discovery's CPU; on the event loop
it starved Kafka, the classifier and the SQLite writes that share the loop (the README's
Performance section has the figures). Here each process has its own read-only connection (WAL
readers never block the writer) and computes whole jobs, so the loop only decodes, sends and
writes.

A process that dies (killed, out of memory) breaks the pool: it is replaced, and the job is
retried one discovery at a time, so a wallet that kills its process every time fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

from agents.compute.on_demand import OnDemandJob, Outcome, compute_discoveries
from agents.compute.processes import reader, reader_pool

__all__ = ["PROCESS_DIED", "FeaturePool"]

log = logging.getLogger("personas.features")

PROCESS_DIED = "the feature process died computing this wallet"


def _compute(job: OnDemandJob) -> list[Outcome]:
    return compute_discoveries(reader(), job)


def _ready() -> bool:
    return reader() is not None


class FeaturePool:
    """`processes` worker processes; `compute` runs one job in one of them."""

    def __init__(self, db_path: Path | str, busy_timeout_ms: int, processes: int) -> None:
        self._db = (db_path, busy_timeout_ms)
        self.processes = processes
        self._pool = self._new_pool()
        # After a process died, jobs are retried one discovery at a time, one job after another,
        # so a wallet that kills its process shares the pool with no other retried wallet.
        self._recovering = asyncio.Lock()

    def _new_pool(self) -> ProcessPoolExecutor:
        return reader_pool(*self._db, self.processes)

    async def start(self) -> None:
        """Start every process now, so the first discoveries do not wait for them."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self.processes))
        )

    async def compute(self, job: OnDemandJob) -> list[Outcome]:
        """The job's outcomes, in order."""
        pool = self._pool
        try:
            return await self._run(pool, job)
        except BrokenProcessPool as exc:
            log.warning(
                "a feature process died (%r); retrying its %d discoveries one at a time",
                exc, len(job.discoveries),
            )  # fmt: skip
            self._replace(pool)
        async with self._recovering:
            outcomes: list[Outcome] = []
            for discovery in job.discoveries:
                pool = self._pool
                try:
                    outcomes.extend(await self._run(pool, replace(job, discoveries=(discovery,))))
                except BrokenProcessPool:
                    log.error("%s: %s", discovery.wallet, PROCESS_DIED)
                    self._replace(pool)
                    outcomes.append(Outcome(0, None, PROCESS_DIED, 0.0))
            return outcomes

    async def _run(self, pool: ProcessPoolExecutor, job: OnDemandJob) -> list[Outcome]:
        return await asyncio.get_running_loop().run_in_executor(pool, _compute, job)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        # Jobs in flight all fail with the same broken pool: the first replaces it, once.
        if self._pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
