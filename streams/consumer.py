"""The agents' consumers: a consumer group member that commits a batch only after it is handled.

Each agent reads its topic with a plain aiokafka consumer in its own group `<app_id>-<stage>`, in
`getmany` batches: Faust's per-event machinery (an Event, a task and a buffer hand-off per message)
was the bottleneck of ingest and a large share of the event loop on the on-demand path (figures in
the README's Performance section); here a batch costs one fetch and one commit.

The guarantee: `handle(batch, context)` stores the batch (SQLite commit, broker receipts, dead
letters), and only then are its offsets committed, so an offset is never committed past a message
that has not finished. A handler that cannot finish crashes the process (`Runtime.crash`) and
commits nothing; the batch is redelivered and every write is idempotent.

Offsets are committed beside the batches, not between them: once a batch is stored, the next one
may store while its offsets go to the broker, and the offsets of batches stored while a commit
is in flight go together in the next one. Waiting for each commit before the next batch stored
put a broker round trip on every batch's path, and one commit request per batch. While batches
flow, commits are also spaced (`COMMIT_SPACING_S`): a stop or a rebalance commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from mode import Service

from agents.context import AgentContext, worker_name
from agents.store import connect
from agents.store.partition_owners import claim_partitions, release_partitions
from config.settings import BatchSettings
from streams.runtime import Record, Runtime
from streams.topics import stage_group

if TYPE_CHECKING:
    from streams.app import App

__all__ = ["BatchConsumer", "FetchWait", "group_component", "register_consumer"]

log = logging.getLogger("personas.consumer")

#: An agent's `handle(batch, context)` (see `agents.context`).
Handler = Callable[[list[Record], AgentContext], Awaitable[None]]

# How long the broker holds a fetch that finds no new data. Kafka answers as soon as data arrives,
# but the embedded broker only at its next look (≈ half the wait): there the wait is a latency
# floor on every hop. So it is short while messages flow, and long once the topic has been quiet
# for a while, so that an idle worker does not poll the broker hundreds of times a second. Not
# shorter than 20 ms: every fetch costs the event loop (aiokafka's protocol code is Python), and
# at 5 ms the two busy consumers' fetches took so much of it that the tail grew with any other
# load (p99 publish → committed at 500/s: 232–595 ms, against 127–208 ms at 20 ms in the same
# run; README, Performance). The price: ≈ 3 ms more at the median on each consumer hop.
FETCH_WAIT_BUSY_MS = 20
FETCH_WAIT_IDLE_MS = 100
IDLE_AFTER_S = 1.0

# Batches fetched and handed to the handler before the oldest has committed. Waiting for each
# batch's commit before the next fetch left messages in the broker for a whole batch (its writes,
# receipts and offset commit); a few in flight keep fetching while bounding the batches held.
BATCHES_IN_FLIGHT = 4

# The least time between two offset commits of a consumer while batches keep being stored: the
# offsets of the batches stored meanwhile go together. A commit per batch was one more request
# per batch for the event loop; a crash now redelivers up to this much more (writes are
# idempotent). The first commit after a quiet spell goes at once.
COMMIT_SPACING_S = 0.1

# How long recording the partitions a rebalance gave or took may wait for the store's lock: the
# rebalance waits for it, and a record not written only costs the leader's dealing its balance.
OWNER_RECORD_BUSY_MS = 2_000


def group_component(stage: str) -> str:
    """What /health waits for until the stage's consumer has joined its group."""
    return f"{stage} consumer group"


class FetchWait:
    """The consumer's fetch wait: busy while fetches bring messages, idle after a quiet spell."""

    def __init__(
        self, consumer: AIOKafkaConsumer, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # aiokafka takes the wait once, at construction, but reads it for every fetch request
        # from its fetcher (made by `start`); without that attribute the idle wait stays.
        self._fetcher = getattr(consumer, "_fetcher", None)
        self._clock = clock
        self._last_messages = -math.inf
        self.wait_ms = FETCH_WAIT_IDLE_MS

    def update(self, got_messages: bool) -> None:
        """After each fetch: busy if it brought messages, idle after `IDLE_AFTER_S` of none."""
        now = self._clock()
        if got_messages:
            self._last_messages = now
        busy = now - self._last_messages < IDLE_AFTER_S
        wait_ms = FETCH_WAIT_BUSY_MS if busy else FETCH_WAIT_IDLE_MS
        if wait_ms != self.wait_ms and hasattr(self._fetcher, "_fetch_max_wait_ms"):
            self._fetcher._fetch_max_wait_ms = wait_ms  # type: ignore[union-attr]
            self.wait_ms = wait_ms


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions are revoked, let the batch in flight finish and commit its offsets; record
    which partitions this worker holds (`agents.store.partition_owners`)."""

    def __init__(self, consumer: BatchConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._consumer.finish_in_flight()
        await self._consumer.record_owner(release_partitions, revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # In the group (with or without partitions): this consumer no longer holds a start back.
        self._consumer.runtime.health.ready(group_component(self._consumer.stage))
        log.info("%s assigned %s", self._consumer.stage,
                 sorted((tp.topic, tp.partition) for tp in assigned))  # fmt: skip
        await self._consumer.record_owner(partial(claim_partitions, now=time.time()), assigned)


class BatchConsumer(Service):
    """Fetch a batch, hand it to `handle`, commit its offsets, repeat.

    The next batches are fetched while the previous ones are handled (up to `BATCHES_IN_FLIGHT`),
    and `handle` is called at once: a handler that is a plain function doing work before it
    returns its awaitable (decoding, starting computations) does that work beside the batches in
    flight. The awaitables are awaited one at a time in fetch order: a batch's writes start only
    once the batch before it is stored. Its offsets are then committed by `_commit_stored`, one
    commit request at a time, with those of every batch stored meanwhile.
    """

    def __init__(
        self,
        runtime: Runtime,
        stage: str,
        topic: str,
        bootstrap: str,
        handle: Handler,
        *,
        batch_max: int,
        batch_within_s: float,
        max_partition_fetch_bytes: int = 2**20,
        fetch_hop: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        #: the on-demand latency hop that ends when this consumer fetches a message, if any
        self._fetch_hop = fetch_hop
        self.runtime, self.stage, self.topic, self.bootstrap = runtime, stage, topic, bootstrap
        self._handle = handle
        self._context: AgentContext | None = None
        self._batch_max, self._within_ms = batch_max, int(batch_within_s * 1000)
        self._fetch_bytes = max_partition_fetch_bytes
        # Held while a batch is fetched: a rebalance or a shutdown waits for it.
        self._fetching = asyncio.Lock()
        # Batches being handled and stored, in fetch order, while the next one is fetched.
        self._in_flight: deque[asyncio.Task[None]] = deque()
        # Offsets of stored batches not yet sent to the broker, and the task committing them.
        self._stored: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None
        self._commit_spacing_s = COMMIT_SPACING_S
        self._committed_at = -math.inf
        # Set while someone waits for every stored offset to be committed: no spacing then.
        self._flush = asyncio.Event()
        self._closed = False
        self._consumer: AIOKafkaConsumer | None = None
        self._fetch_wait: FetchWait | None = None

    async def on_start(self) -> None:
        self._context = await self.runtime.context()
        settings = self.runtime.settings
        broker = settings.broker
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{broker.client_id}-{self.stage}",
            group_id=stage_group(settings.worker.app_id, self.stage),
            enable_auto_commit=False,
            # "latest" is unreliable on the embedded broker (wrong end offsets).
            auto_offset_reset="earliest",
            session_timeout_ms=int(broker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(broker.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(broker.rebalance_timeout_s * 1000),
            request_timeout_ms=int(broker.request_timeout_s * 1000),
            fetch_max_wait_ms=FETCH_WAIT_IDLE_MS,
            max_partition_fetch_bytes=self._fetch_bytes,
            fetch_max_bytes=4 * self._fetch_bytes,
        )
        self._consumer.subscribe([self.topic], listener=_FinishBatchFirst(self))
        await self._consumer.start()
        self._fetch_wait = FetchWait(self._consumer)  # its fetcher exists once started

    async def finish_in_flight(self) -> None:
        """Wait until the batches being handled are done and their offsets committed.

        Called by the rebalance listener, so it must not wait for the fetch lock: the fetch may
        itself be waiting for the rebalance to finish. A batch fetched just before the revocation
        is handled after it; its commit then fails harmlessly and the new owner re-reads it.
        """
        await self._wait_in_flight()

    async def record_owner(
        self, record: Callable[..., None], partitions: Iterable[TopicPartition]
    ) -> None:
        """Claim or release `partitions` in the store as this worker's; a store that cannot be
        written costs the leader's dealing its balance, so it is logged, never raised."""
        pairs = sorted((tp.topic, tp.partition) for tp in partitions)
        if not pairs:
            return
        database = self.runtime.settings.database
        group = stage_group(self.runtime.settings.worker.app_id, self.stage)

        def write() -> None:
            busy_ms = min(database.busy_timeout_ms, OWNER_RECORD_BUSY_MS)
            with contextlib.closing(connect(database.url, busy_ms)) as conn:
                record(conn, group, worker_name(), pairs)

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            log.warning("%s: could not record the partitions it holds: %r", self.stage, exc)

    async def _wait_in_flight(self) -> None:
        # Each batch finishes after the one before it: the last one done means all are.
        while self._in_flight:
            last = self._in_flight[-1]
            await asyncio.shield(last)
            self._drop_finished()
        await self._wait_committed()

    async def _wait_committed(self) -> None:
        """Until every stored batch's offsets are committed, at once (not spaced)."""
        self._flush.set()
        try:
            while self._committing is not None and not self._committing.done():
                await asyncio.shield(self._committing)
        finally:
            self._flush.clear()

    def _drop_finished(self) -> None:
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()

    async def _room_for_a_batch(self) -> None:
        self._drop_finished()
        while len(self._in_flight) >= BATCHES_IN_FLIGHT:
            await asyncio.shield(self._in_flight[0])
            self._drop_finished()

    async def on_stop(self) -> None:
        async with self._fetching:  # between two fetches: no batch is half handed over
            self._closed = True
        # The last batch finishes and commits, then the consumer leaves the group (not under the
        # lock: leaving may run the rebalance listener).
        await self._wait_in_flight()
        if self._consumer is not None:
            held = self._consumer.assignment()
            await self._consumer.stop()
            await self.record_owner(release_partitions, held)  # gone: no longer dealt jobs

    @Service.task
    async def _consume(self) -> None:
        while True:
            async with self._fetching:
                if self._closed or self._consumer is None or self._context is None:
                    return
                await self._room_for_a_batch()
                fetched = await self._consumer.getmany(
                    timeout_ms=self._within_ms, max_records=self._batch_max
                )
                if self._fetch_wait is not None:
                    self._fetch_wait.update(bool(fetched))
                if not fetched:
                    continue
                records = [record for batch in fetched.values() for record in batch]
                if self._fetch_hop is not None:
                    self._observe_fetch(records)
                offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
                try:
                    handled = self._handle(records, self._context)
                except Exception as exc:  # a bug: stop before anything of it is committed
                    self.runtime.crash(self.stage, exc)
                previous = self._in_flight[-1] if self._in_flight else None
                self._in_flight.append(
                    asyncio.ensure_future(self._finish(previous, handled, offsets))
                )

    def _observe_fetch(self, records: list[Record]) -> None:
        """Publish → fetched, from each record's timestamp (set by its producer)."""
        assert self._fetch_hop is not None
        hop = self.runtime.metrics.on_demand_hops.labels(self._fetch_hop)
        now_ms = time.time() * 1000
        for record in records:
            hop.observe(max(0.0, now_ms - record.timestamp) / 1000)

    async def _finish(
        self,
        previous: asyncio.Task[None] | None,
        handled: Awaitable[None],
        offsets: dict[TopicPartition, int],
    ) -> None:
        try:
            if previous is not None:  # its writes first: batches are stored in fetch order
                await asyncio.shield(previous)
            await handled
        except asyncio.CancelledError as exc:
            if self._closed:  # stopping: the batch is left uncommitted, to be redelivered
                raise
            self.runtime.crash(self.stage, exc)  # not stopping: never let a batch vanish
        except Exception as exc:
            self.runtime.crash(self.stage, exc)
        # Stored in fetch order, so a later batch's offsets supersede an earlier one's.
        self._stored.update(offsets)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self._commit_stored())

    async def _commit_stored(self) -> None:
        """Commit the stored batches' offsets, again while more were stored during a commit."""
        while self._stored:
            await self._spaced()
            offsets, self._stored = self._stored, {}
            self._committed_at = time.monotonic()
            await self.runtime.retry(f"{self.stage}-commit", self._commit, offsets)
            self.runtime.health.progressed(self.stage)

    async def _spaced(self) -> None:
        """Until `COMMIT_SPACING_S` after the last commit began, or a flush is asked for."""
        pause = self._committed_at + self._commit_spacing_s - time.monotonic()
        if pause > 0 and not self._flush.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush.wait(), pause)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced under us, or the partitions are no longer ours: the new
            # owner re-reads this batch, and every write is idempotent.
            log.warning("%s offsets not committed (group rebalanced): %s", self.stage, exc)


def register_consumer(
    app: App,
    runtime: Runtime,
    stage: str,
    topic: str,
    bootstrap: str,
    handle: Handler,
    batch: BatchSettings,
    **options: Any,
) -> None:
    """Run a BatchConsumer for `stage` with the app, started after its producer (handlers send).

    /health waits for it to join its group.
    """
    runtime.health.starting(group_component(stage))
    app.start_with(BatchConsumer(
        runtime, stage, topic, bootstrap, handle,
        batch_max=batch.batch_max, batch_within_s=batch.batch_within_s, **options,
    ))  # fmt: skip
