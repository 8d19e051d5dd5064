"""The Python producer API: validated records in, keyed JSON messages out (SPEC §10)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from agents.core.codec import encode
from agents.core.records import FeatureSet, Trade, WalletDiscovered
from config.settings import Settings

__all__ = ["Publisher", "discovery", "publish_discoveries", "publisher", "started_producer"]

# Records keyed by their wallet, so one wallet's events stay in order on one partition.
Keyed = Trade | WalletDiscovered | FeatureSet

# In-flight sends awaited together: bounds memory while letting the producer batch.
WINDOW = 5000


class Publisher:
    """A started producer that sends records keyed by wallet, in order per wallet."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self._producer = producer
        self.topics = settings.topics

    async def send(self, topic: str, record: BaseModel, key: str) -> None:
        """Send one record and wait until the broker has it."""
        await self._producer.send_and_wait(topic, encode(record), key=key.encode())

    async def send_many(
        self,
        topic: str,
        records: Iterable[Keyed],
        *,
        rate: float | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Send records keyed by their wallet; return once the broker has all of them.

        `rate` caps the messages per second; `on_progress(sent)` is called as sends complete.
        """
        pending: list[asyncio.Future[Any]] = []
        sent = 0
        window = WINDOW if rate is None else max(1, min(WINDOW, int(rate)))
        started = time.monotonic()
        for queued, record in enumerate(records):
            if rate is not None and rate > 0:
                # Pace by the schedule, not by sleeps per message: no drift, bursts stay bounded.
                ahead = started + queued / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            pending.append(
                await self._producer.send(topic, encode(record), key=record.proxy_wallet.encode())
            )
            if len(pending) >= window:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
                if on_progress is not None:
                    on_progress(sent)
        await asyncio.gather(*pending)
        sent += len(pending)
        if on_progress is not None:
            on_progress(sent)
        return sent

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send bytes as they are, unvalidated (tests send malformed messages with it)."""
        await self._producer.send_and_wait(topic, value, key=key)


@asynccontextmanager
async def started_producer(
    bootstrap: str, settings: Settings, role: str
) -> AsyncIterator[AIOKafkaProducer]:
    """A started aiokafka producer (every replica acknowledges); flushed and stopped on exit."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.broker.client_id}-{role}",
        # No linger: an event goes out at once; under load, sends queue behind the request in
        # flight and go out together anyway, in batches of up to this many bytes.
        linger_ms=0,
        max_batch_size=settings.broker.producer_batch_bytes,
        acks="all",
        request_timeout_ms=int(settings.broker.request_timeout_s * 1000),
    )
    await producer.start()
    try:
        yield producer
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def publisher(bootstrap: str, settings: Settings) -> AsyncIterator[Publisher]:
    """A Publisher on `bootstrap`; flushed and closed on exit."""
    async with started_producer(bootstrap, settings, "publisher") as producer:
        yield Publisher(producer, settings)


def discovery(
    wallet: str, discovered_at: int | str | None = None, source: str = "api"
) -> WalletDiscovered:
    """A validated discovery event; `discovered_at` defaults to now."""
    return WalletDiscovered.model_validate(
        {
            "proxy_wallet": wallet,
            "discovered_at": discovered_at or int(time.time()),
            "source": source,
        }
    )


async def publish_discoveries(
    bootstrap: str, settings: Settings, events: Iterable[WalletDiscovered]
) -> int:
    """Publish discovery events to `wallet-discovered`; return how many the broker has."""
    async with publisher(bootstrap, settings) as pub:
        return await pub.send_many(settings.topics.discovered, events)
