"""What the agents share inside one worker: settings, store, metrics, dead letters, retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from aiokafka.structs import ConsumerRecord, RecordMetadata
from faust.types import ProducerT

from agents.feature_pool import FeaturePool
from agents.store import Store
from config.settings import Settings
from streams.codec import dumps
from streams.health import Health
from streams.metrics import Metrics
from streams.topics import dlq_name

__all__ = ["Record", "Runtime", "dead_letter_envelope", "is_transient"]

log = logging.getLogger("personas.runtime")

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 5.0
# An exit status that says "crashed on purpose so that nothing gets committed".
EXIT_INFRASTRUCTURE = 70


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves: a locked database, a broker that is not reachable."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text
    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)


def dead_letter_envelope(record: Record, error: BaseException, failed_at: float) -> bytes:
    """The DLQ value (SPEC §2): the original bytes plus reason, error, topic, partition, offset."""
    raw = record.value if isinstance(record.value, bytes) else b""
    envelope: dict[str, Any] = {
        "reason": str(error),
        "error": type(error).__name__,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "failed_at": failed_at,
    }
    try:
        envelope["value"] = raw.decode()
    except UnicodeDecodeError:
        envelope["value_base64"] = base64.b64encode(raw).decode()
    return dumps(envelope)


@dataclass
class Runtime:
    """One worker's shared resources; the store and the feature processes start on first use."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    #: the worker's producer (Faust's, started with the app); set by `build_app`
    producer: ProducerT | None = None
    _store: Store | None = None
    _feature_pool: FeaturePool | None = None
    _open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def store(self) -> Store:
        """The worker's store, opened (and migrated) once."""
        async with self._open_lock:
            if self._store is None:
                db = self.settings.database
                self._store = await Store.open(db.path, db.busy_timeout_ms)
            return self._store

    async def feature_pool(self) -> FeaturePool:
        """The processes computing on-demand features, started once (after the store migrated)."""
        await self.store()  # migrated before any reader opens
        async with self._open_lock:
            if self._feature_pool is None:
                db = self.settings.database
                pool = FeaturePool(
                    db.path, db.busy_timeout_ms, self.settings.features.process_count
                )
                await pool.start()
                self._feature_pool = pool
        return self._feature_pool

    async def close(self) -> None:
        if self._feature_pool is not None:
            await self._feature_pool.close()
            self._feature_pool = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def retry(self, operation: str, action: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `action(*args)`, retrying transient errors with backoff forever; crash on others."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return await action(*args)
            except Exception as exc:
                if not is_transient(exc):
                    self.crash(operation, exc)
                self.metrics.transient_retries.labels(operation).inc()
                log.warning("%s: transient error, retrying in %.2fs: %s", operation, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[RecordMetadata]:
        """Queue a message; the returned awaitable is its delivery receipt."""
        assert self.producer is not None, "runtime has no producer"
        return await self.producer.send(topic, key, value, None, None, None)

    async def dead_letter_all(self, failed: Sequence[tuple[Record, BaseException]]) -> None:
        """Send a batch's failed messages to their DLQs and wait until the broker has them all.

        Sent together and awaited once: one at a time, each waits out the producer's linger, which
        held a burst of bad input to ~200 dead letters a second. A transient error re-sends the
        lot; a dead letter is identified by its source topic/partition/offset, so a copy is
        harmless (delivery is at-least-once anyway: a crash before the commit re-sends it too).
        """
        if not failed:
            return
        now = time.time()
        letters = []
        for record, error in failed:
            log.warning(
                "dead-lettered %s[%d] offset %d: %s",
                record.topic, record.partition, record.offset, error,
            )  # fmt: skip
            key = record.key if isinstance(record.key, bytes) else None
            letters.append((record.topic, key, dead_letter_envelope(record, error, now)))

        async def send() -> None:
            deliveries = [
                await self.send(dlq_name(source), key, value) for source, key, value in letters
            ]
            await asyncio.gather(*deliveries)

        await self.retry("dead-letter", send)
        for source, _, _ in letters:
            self.metrics.dead_letters.labels(source).inc()

    def crash(self, operation: str, exc: BaseException) -> NoReturn:
        """Stop the process at once, committing nothing.

        Shutting down cleanly would commit the offsets of batches already handled, and risks
        committing around the one that failed. Exiting here loses no event: the batch is
        redelivered to the next worker, and every write is idempotent.
        """
        log.critical("%s failed, stopping the worker uncommitted: %r", operation, exc)
        logging.shutdown()
        os._exit(EXIT_INFRASTRUCTURE)
