"""Small broker helpers for tests: publish records, read a topic from the beginning."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.core.records import Trade, WalletDiscovered
from config.settings import Settings
from streams.producer import publisher

__all__ = ["consume_and_commit", "group_consumer", "publish", "publish_raw", "read_topic"]


def publish(
    bootstrap: str, settings: Settings, topic: str, records: Sequence[Trade | WalletDiscovered]
) -> None:
    async def send() -> None:
        async with publisher(bootstrap, settings) as pub:
            await pub.send_many(topic, records)

    asyncio.run(send())


def publish_raw(bootstrap: str, settings: Settings, topic: str, values: Sequence[bytes]) -> None:
    async def send() -> None:
        async with publisher(bootstrap, settings) as pub:
            for value in values:
                await pub.send_raw(topic, value, key=b"bad")

    asyncio.run(send())


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0, partition_id: int = 0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a partition of `topic` from the start until `expected` records or the timeout."""

    async def read() -> list[ConsumerRecord[bytes, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(topic, partition_id)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            records: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + timeout
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(partition, timeout_ms=500)
                records.extend(batch.get(partition, []))
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


def group_consumer(bootstrap: str, settings: Settings, group: str, topic: str) -> AIOKafkaConsumer:
    """A consumer in `group` on `topic`, manual commits, the test group timings (not started)."""
    broker = settings.broker
    return AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=int(broker.session_timeout_s * 1000),
        heartbeat_interval_ms=int(broker.heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(broker.rebalance_timeout_s * 1000),
    )  # fmt: skip


def consume_and_commit(
    bootstrap: str, settings: Settings, group: str, topic: str, expected: int, timeout: float = 40
) -> None:
    """A plain group member reads `expected` messages of `topic`, commits and leaves."""

    async def consume() -> None:
        consumer = group_consumer(bootstrap, settings, group, topic)
        await consumer.start()
        try:
            seen = 0
            async with asyncio.timeout(timeout):
                while seen < expected:
                    batch = await consumer.getmany(timeout_ms=200)
                    seen += sum(len(records) for records in batch.values())
            await consumer.commit()
        finally:
            await consumer.stop()

    asyncio.run(consume())
