"""The consumer's half of "write before ack": offsets are committed only once the handler's
awaitable is done, a handler that fails commits nothing, batches in flight together store one
after another, in fetch order, and the offsets of batches stored during a commit go together
in the next one; commits are spaced while batches flow, but not when a stop or a rebalance waits
for them; the fetch wait follows the load."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import pytest
from aiokafka import TopicPartition

from config.settings import Settings
from streams.consumer import (
    FETCH_WAIT_BUSY_MS,
    FETCH_WAIT_IDLE_MS,
    IDLE_AFTER_S,
    BatchConsumer,
    FetchWait,
)
from streams.runtime import Runtime

PARTITION = TopicPartition("trades", 0)


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


class Crashed(Exception):
    pass


@pytest.fixture
def consumer(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> BatchConsumer:
    runtime = Runtime(settings)

    def crash(operation: str, exc: BaseException) -> NoReturn:
        raise Crashed(operation) from exc

    monkeypatch.setattr(runtime, "crash", crash)
    batch = BatchConsumer(
        runtime, "ingest", "trades", "unused:9092", lambda records, context: asyncio.sleep(0),
        batch_max=10, batch_within_s=0.1,
    )  # fmt: skip
    batch._consumer = RecordingConsumer()
    return batch


def commits(consumer: BatchConsumer) -> list[dict[TopicPartition, int]]:
    recording = consumer._consumer
    assert isinstance(recording, RecordingConsumer)
    return recording.commits


async def test_offsets_wait_for_the_handler(consumer: BatchConsumer) -> None:
    stored = asyncio.Event()

    async def store() -> None:
        await stored.wait()

    finishing = asyncio.ensure_future(consumer._finish(None, store(), {PARTITION: 7}))
    for _ in range(10):
        await asyncio.sleep(0)
    assert commits(consumer) == []
    stored.set()
    await finishing
    await consumer._wait_committed()
    assert commits(consumer) == [{PARTITION: 7}]


async def test_a_failed_handler_commits_nothing(consumer: BatchConsumer) -> None:
    async def fails() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(Crashed, match="ingest"):
        await consumer._finish(None, fails(), {PARTITION: 7})
    assert commits(consumer) == []


async def test_a_batch_stores_only_after_the_one_before_it_is_stored(
    consumer: BatchConsumer,
) -> None:
    first_stored = asyncio.Event()
    started: list[str] = []

    async def store(name: str, done: asyncio.Event | None = None) -> None:
        started.append(name)
        if done is not None:
            await done.wait()

    first = asyncio.ensure_future(
        consumer._finish(None, store("first", first_stored), {PARTITION: 3})
    )
    second = asyncio.ensure_future(consumer._finish(first, store("second"), {PARTITION: 7}))
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == ["first"] and commits(consumer) == []  # the second waits its turn
    first_stored.set()
    await second
    await consumer._wait_committed()
    assert started == ["first", "second"]
    assert commits(consumer) == [{PARTITION: 3}, {PARTITION: 7}]


class SlowCommits(RecordingConsumer):
    """A broker that answers a commit only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)
        await self.answer.wait()
        self.answer.clear()


async def test_batches_stored_during_a_commit_are_committed_together(
    consumer: BatchConsumer,
) -> None:
    broker = consumer._consumer = SlowCommits()
    consumer._commit_spacing_s = 0.0  # the next commit may go as soon as this one is answered
    other = TopicPartition("trades", 1)
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 3})
    for _ in range(5):
        await asyncio.sleep(0)
    assert broker.commits == [{PARTITION: 3}]  # in flight, unanswered
    # The next batches store without waiting for that commit …
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 5})
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 7, other: 2})
    assert broker.commits == [{PARTITION: 3}]
    broker.answer.set()
    for _ in range(5):
        await asyncio.sleep(0)
    # … and go to the broker in one commit, the later offset of a partition superseding.
    assert broker.commits == [{PARTITION: 3}, {PARTITION: 7, other: 2}]
    broker.answer.set()
    await consumer._wait_committed()
    assert len(broker.commits) == 2


async def test_commits_are_spaced_while_batches_flow_but_not_when_awaited(
    consumer: BatchConsumer,
) -> None:
    consumer._commit_spacing_s = 3600.0
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 3})
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 5})
    for _ in range(10):
        await asyncio.sleep(0)
    assert commits(consumer) == [{PARTITION: 3}]  # the first at once, the next one spaced
    await consumer._finish(None, asyncio.sleep(0), {PARTITION: 7})
    await consumer._wait_committed()  # what a stop and a rebalance wait for: at once
    assert commits(consumer) == [{PARTITION: 3}, {PARTITION: 7}]


class Fetcher:
    _fetch_max_wait_ms = FETCH_WAIT_IDLE_MS


class Started:
    """What FetchWait sees of a started aiokafka consumer: its fetcher."""

    def __init__(self) -> None:
        self._fetcher = Fetcher()


def test_the_fetch_wait_is_short_while_messages_flow_and_long_when_idle() -> None:
    now = [0.0]
    consumer = Started()
    wait = FetchWait(consumer, clock=lambda: now[0])
    wait.update(got_messages=True)
    assert consumer._fetcher._fetch_max_wait_ms == FETCH_WAIT_BUSY_MS
    now[0] = IDLE_AFTER_S / 2
    wait.update(got_messages=False)  # a quiet moment between messages
    assert consumer._fetcher._fetch_max_wait_ms == FETCH_WAIT_BUSY_MS
    now[0] = IDLE_AFTER_S + 0.01
    wait.update(got_messages=False)
    assert consumer._fetcher._fetch_max_wait_ms == FETCH_WAIT_IDLE_MS
