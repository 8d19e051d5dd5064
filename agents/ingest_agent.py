"""Ingest: `trades` → validated → one INSERT OR IGNORE transaction per batch → offsets committed.

The trades topic is the high-volume one, and Faust's per-event machinery (one Event, one
ensure_future and one buffer hand-off per message) held one agent to ~3,300 trades/s on two cores,
whatever the batch settings. So trades are read by a plain aiokafka consumer inside the worker, in
`getmany` batches, in its own consumer group `<app_id>-ingest`. The guarantee is the agents' one:
a batch's offsets are committed only after its SQLite commit and its dead letters' delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.types import EventT
from mode import Service

from streams.codec import decode
from streams.errors import InvalidMessage
from streams.records import Trade
from streams.runtime import Runtime

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["TradeIngest", "ingest_group", "register"]

log = logging.getLogger("personas.ingest")

# Bytes per partition per fetch: ~25k trades of ~200 B, so one fetch fills a batch.
MAX_PARTITION_FETCH_BYTES = 5 * 2**20


def ingest_group(app_id: str) -> str:
    """The consumer group that reads the trades topic."""
    return f"{app_id}-ingest"


@dataclass(frozen=True, slots=True)
class _Failed:
    """A consumer record where the dead-letter path expects an event: it reads `.message`."""

    message: ConsumerRecord[bytes, bytes]


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions are revoked, let the batches in flight finish and commit their offsets."""

    def __init__(self, ingest: TradeIngest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._ingest.finish_in_flight()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("ingest assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


@dataclass(frozen=True, slots=True)
class _Batch:
    """One fetched batch, decoded: what to store, what to dead-letter, what to commit."""

    trades: list[Trade]
    rejected: list[tuple[ConsumerRecord[bytes, bytes], InvalidMessage]]
    offsets: dict[TopicPartition, int]


class TradeIngest(Service):
    """The trades consumer: fetch a batch, store it, dead-letter the bad ones, commit, repeat.

    Two batches overlap: while one is written to SQLite (in aiosqlite's thread, mostly outside
    the GIL), the next is fetched and decoded. Writes and commits still happen one batch at a
    time, in fetch order, so offsets are committed in order and only after their SQLite commit.
    """

    def __init__(self, runtime: Runtime, topic: str, bootstrap: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime, self.topic, self.bootstrap = runtime, topic, bootstrap
        # Held while a batch is fetched and decoded: a rebalance or a shutdown waits for it.
        self._fetching = asyncio.Lock()
        # The previous batch's write + commit, running while the next batch is fetched.
        self._writing: asyncio.Task[None] | None = None
        self._closed = False
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        settings = self.runtime.settings
        broker = settings.broker
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{broker.client_id}-ingest",
            group_id=ingest_group(settings.worker.app_id),
            enable_auto_commit=False,
            # "latest" is unreliable on the embedded broker (wrong end offsets).
            auto_offset_reset="earliest",
            session_timeout_ms=int(broker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(broker.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(broker.rebalance_timeout_s * 1000),
            request_timeout_ms=int(broker.request_timeout_s * 1000),
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=4 * MAX_PARTITION_FETCH_BYTES,
        )
        self._consumer.subscribe([self.topic], listener=_FinishBatchFirst(self))
        await self._consumer.start()

    async def finish_in_flight(self) -> None:
        """Wait until every fetched batch is stored and its offsets committed."""
        async with self._fetching:
            await self._wait_written()

    async def _wait_written(self) -> None:
        if self._writing is not None:
            await asyncio.shield(self._writing)
            self._writing = None

    async def on_stop(self) -> None:
        # Let the batches in flight finish and commit, then leave the group.
        async with self._fetching:
            await self._wait_written()
            self._closed = True
            if self._consumer is not None:
                await self._consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        config = self.runtime.settings.ingest
        timeout_ms = int(config.batch_within_s * 1000)
        while True:
            async with self._fetching:
                if self._closed or self._consumer is None:
                    return
                fetched = await self._consumer.getmany(
                    timeout_ms=timeout_ms, max_records=config.batch_max
                )
                if not fetched:
                    continue
                batch = _decode(fetched)
                await self._wait_written()
                self._writing = asyncio.ensure_future(self._write(batch))

    async def _write(self, batch: _Batch) -> None:
        runtime, metrics = self.runtime, self.runtime.metrics
        store = await runtime.store()
        trades = batch.trades
        inserted = await runtime.retry("ingest", store.insert_trades, trades) if trades else 0
        await runtime.dead_letter_all(
            [(cast("EventT[Any]", _Failed(record)), exc) for record, exc in batch.rejected]
        )
        metrics.trades_ingested.labels("stored").inc(inserted)
        metrics.trades_ingested.labels("duplicate").inc(len(trades) - inserted)
        metrics.trades_ingested.labels("rejected").inc(len(batch.rejected))
        await runtime.retry("ingest-commit", self._commit, batch.offsets)
        runtime.health.progressed("ingest")

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us, or the partitions are no longer ours: the new
            # owner re-reads these trades, and INSERT OR IGNORE makes that harmless.
            log.warning("ingest offsets not committed (group rebalanced): %s", exc)


def _decode(fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> _Batch:
    trades: list[Trade] = []
    rejected: list[tuple[ConsumerRecord[bytes, bytes], InvalidMessage]] = []
    for records in fetched.values():
        for record in records:
            try:
                trades.append(decode(Trade, record.value))
            except InvalidMessage as exc:
                rejected.append((record, exc))
    offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
    return _Batch(trades, rejected, offsets)


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    """Start the trades consumer with the app (after its producer, for dead letters)."""
    bootstrap = ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)
    name = topics.trades.get_topic_name()

    @app.task
    async def start_ingest() -> None:
        await app.add_runtime_dependency(TradeIngest(runtime, name, bootstrap, loop=app.loop))
