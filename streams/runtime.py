"""What the agents share inside one worker: settings, store, metrics, dead letters, retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar, cast

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from faust.types import EventT, StreamT, TopicT

from agents.feature_pool import FeaturePool
from agents.store import Store
from config.settings import Settings
from streams.codec import dumps
from streams.health import Health
from streams.metrics import Metrics

__all__ = ["Runtime", "acknowledge", "dead_letter_envelope", "event_batches", "is_transient"]

log = logging.getLogger("personas.runtime")

T = TypeVar("T")

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 5.0
# An exit status that says "crashed on purpose so that nothing gets acknowledged".
EXIT_INFRASTRUCTURE = 70


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves: a locked database, a broker that is not reachable."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text
    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)


def event_batches(
    stream: StreamT[Any], size: int, within: float
) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Batches of up to `size` events (waiting at most `within` s), never acknowledged by Faust.

    `noack_take` yields the events themselves (its annotation says values); see `acknowledge`.
    """
    return cast(AsyncIterator[Sequence[EventT[Any]]], cast(Any, stream).noack_take(size, within))


async def acknowledge(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
    """Mark a finished batch safe to commit.

    Agents take batches with `noack_take`: Faust's `take`/`take_events` acknowledge a batch in a
    `finally`, so a crash or a shutdown in the middle of a write would let its offsets be
    committed. Acknowledging explicitly, after the SQLite commit and the broker's delivery
    receipts, means an offset is never committed past a message that has not finished.
    """
    for event in events:
        await stream.ack(event)


def dead_letter_envelope(event: EventT[Any], error: BaseException, failed_at: float) -> bytes:
    """The DLQ value (SPEC §2): the original bytes plus reason, error, topic, partition, offset."""
    message = event.message
    raw = message.value if isinstance(message.value, bytes) else b""
    envelope: dict[str, Any] = {
        "reason": str(error),
        "error": type(error).__name__,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "failed_at": failed_at,
    }
    try:
        envelope["value"] = raw.decode()
    except UnicodeDecodeError:
        envelope["value_base64"] = base64.b64encode(raw).decode()
    return dumps(envelope)


@dataclass
class Runtime:
    """One worker's shared resources; the store opens lazily on first use."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    dead_letter_topics: dict[str, TopicT] = field(default_factory=dict)
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

    async def dead_letter_all(self, failed: Sequence[tuple[EventT[Any], BaseException]]) -> None:
        """Send a batch's failed messages to their DLQs and wait until the broker has them all.

        Sent together and awaited once: one at a time, each waits out the producer's linger, which
        held a burst of bad input to ~200 dead letters a second. A transient error re-sends the
        lot; a dead letter is identified by its source topic/partition/offset, so a copy is
        harmless (delivery is at-least-once anyway: a crash before the ack re-sends it too).
        """
        if not failed:
            return
        now = time.time()
        letters = []
        for event, error in failed:
            message = event.message
            log.warning(
                "dead-lettered %s[%d] offset %d: %s",
                message.topic, message.partition, message.offset, error,
            )  # fmt: skip
            key = message.key if isinstance(message.key, bytes) else None
            letters.append((message.topic, key, dead_letter_envelope(event, error, now)))

        async def send() -> None:
            deliveries = [
                await self.dead_letter_topics[source].send(key=key, value=value)
                for source, key, value in letters
            ]
            await asyncio.gather(*deliveries)

        await self.retry("dead-letter", send)
        for source, _, _ in letters:
            self.metrics.dead_letters.labels(source).inc()

    def crash(self, operation: str, exc: BaseException) -> NoReturn:
        """Stop the process at once, acknowledging nothing.

        An exception escaping a Faust agent acknowledges the batch in flight, and its offsets could
        then be committed although nothing was stored. Exiting here loses no event: the batch is
        redelivered to the next worker, and every write is idempotent.
        """
        log.critical("%s failed, stopping the worker unacknowledged: %r", operation, exc)
        logging.shutdown()
        os._exit(EXIT_INFRASTRUCTURE)
