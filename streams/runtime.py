"""One worker's resources: settings, metrics, health, the producer, and the agents' context.

The store and the feature processes are opened once, on first use, and closed with the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

from aiokafka.structs import ConsumerRecord
from faust.types import ProducerT

from agents.compute.feature_pool import FeaturePool
from agents.context import AgentContext, Headers
from agents.retry import Retry
from agents.store import open_store
from config.settings import Settings
from streams.health import Health
from streams.metrics import Metrics

__all__ = ["EXIT_INFRASTRUCTURE", "ProducerSender", "Record", "Runtime"]

log = logging.getLogger("personas.runtime")

Record: TypeAlias = ConsumerRecord[bytes, bytes]

# An exit status that says "crashed on purpose so that nothing gets committed".
EXIT_INFRASTRUCTURE = 70


@dataclass(frozen=True)
class ProducerSender:
    """The agents' `Sender` over the worker's Faust producer."""

    producer: ProducerT

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[Any]:
        # Faust's order: topic, key, value, partition, timestamp, headers.
        return await self.producer.send(
            topic, key, value, partition, None, list(headers or ()) or None
        )


@dataclass
class Runtime:
    """One worker's shared resources; `context()` and `feature_pool()` open theirs once."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    #: the worker's producer (Faust's, started with the app); set by `build_app`
    producer: ProducerT | None = None
    retry: Retry = field(init=False)
    _context: AgentContext | None = None
    _feature_pool: FeaturePool | None = None
    _open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.retry = Retry(self.metrics.transient_retries, self.crash)

    async def context(self) -> AgentContext:
        """What the agents are given: the store (opened and migrated once) and the producer."""
        async with self._open_lock:
            if self._context is None:
                assert self.producer is not None, "runtime has no producer"
                store = await open_store(self.settings.database)
                sender = ProducerSender(self.producer)
                self._context = AgentContext(self.settings, store, sender, self.metrics, self.retry)
            return self._context

    async def feature_pool(self) -> FeaturePool:
        """The processes computing on-demand features, started once (after the store migrated)."""
        await self.context()  # migrated before any reader opens
        async with self._open_lock:
            if self._feature_pool is None:
                db = self.settings.database
                pool = FeaturePool(db.url, db.busy_timeout_ms, self.settings.features.process_count)
                await pool.start()
                self._feature_pool = pool
        return self._feature_pool

    async def close(self) -> None:
        if self._feature_pool is not None:
            await self._feature_pool.close()
            self._feature_pool = None
        if self._context is not None:
            await self._context.store.close()
            self._context = None

    def crash(self, operation: str, exc: BaseException) -> NoReturn:
        """Stop the process at once, committing nothing.

        Shutting down cleanly would commit the offsets of batches already handled, and risks
        committing around the one that failed. Exiting here loses no event: the batch is
        redelivered to the next worker, and every write is idempotent.
        """
        log.critical("%s failed, stopping the worker uncommitted: %r", operation, exc)
        logging.shutdown()
        os._exit(EXIT_INFRASTRUCTURE)
