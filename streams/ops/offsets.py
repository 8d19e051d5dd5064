"""Broker offsets read and written the way that is right on the embedded broker and on Kafka.

The embedded broker (`../shared/BROKER.md`) gets several admin paths wrong, so every operator
command goes through these helpers instead:

- log end: `end_offsets` is wrong when producers batch → fetch the last batch and take the
  partition's high watermark from the fetch response (`consumer.highwater`);
- offsets by time: `offsets_for_times` always answers 0 → binary search on record timestamps;
- committed offsets: `list_consumer_group_offsets` fails → a group consumer's OffsetFetch;
- live members: the embedded broker keeps a stopped worker listed until a request for its group
  makes it check sessions → `live_members` and `session_checked` (`streams.ops.groups`, whose
  names are exported here too) have it check, without touching live members;
- moving an idle group's offsets: once no member is listed, a commit from outside the group
  (`commit_outside`, what `kafka-consumer-groups --reset-offsets` does) is accepted by both, and
  rejected by both while a member is listed, so it never lands under a consumer. An `assign()`
  consumer's commit is refused the same way while a stopped member is still listed. A job that
  must consume as well as commit (the re-drive, the offset guard) joins with `subscribe` instead
  (`joined_member`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from agents.core.errors import BrokerError
from config.settings import Settings
from streams.ops.groups import (
    GroupInfo,
    Liveness,
    describe_group,
    expire_sessions,
    list_groups,
    live_members,
    live_members_of,
    session_checked,
)

__all__ = [
    "GroupInfo",
    "Liveness",
    "LogRange",
    "Membership",
    "admin_client",
    "commit_outside",
    "committed_offsets",
    "describe_group",
    "expire_sessions",
    "joined_member",
    "list_groups",
    "live_members",
    "live_members_of",
    "log_ranges",
    "offset_for_time",
    "quiet_clients",
    "reader",
    "record_at",
    "session_checked",
]

# A fetch answers at once when data is there; when it is not, waiting longer only slows us down.
FETCH_WAIT_MS = 100
PROBE_TIMEOUT_S = 10.0


def quiet_clients(verbose: bool = False) -> None:
    """Keep aiokafka's per-join INFO lines out of an operator command's output."""
    if not verbose:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


@dataclass(frozen=True)
class LogRange:
    """A partition's first offset and log end (the offset the next message will get)."""

    start: int
    end: int


class _FaustProtocol(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """Round-robin under the protocol name Faust's workers join with.

    A broker accepts a member only if it shares a protocol with the group's members; the embedded
    broker keeps a stopped Faust worker listed, so without this name an idle worker group answers
    InconsistentGroupProtocol. We only join as the sole live member, when our own round-robin
    assignment is the one that runs.
    """

    name = "faust"


async def _started_consumer(
    bootstrap: str, settings: Settings, group: str | None
) -> AIOKafkaConsumer:
    """A started consumer for the operator commands; it offers the Faust protocol name too."""
    broker = settings.broker
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=f"{broker.client_id}-ops",
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=int(broker.request_timeout_s * 1000),
        session_timeout_ms=int(broker.session_timeout_s * 1000),
        heartbeat_interval_ms=int(broker.heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(broker.rebalance_timeout_s * 1000),
        partition_assignment_strategy=(RoundRobinPartitionAssignor, _FaustProtocol),
    )
    try:
        await consumer.start()
    except Exception as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
    return consumer


@asynccontextmanager
async def reader(
    bootstrap: str, settings: Settings, group: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer that never joins or commits: for `assign`, `seek` and `committed`."""
    consumer = await _started_consumer(bootstrap, settings, group)
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def admin_client(bootstrap: str, settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=f"{settings.broker.client_id}-ops-admin"
    )
    try:
        await admin.start()
    except Exception as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
    try:
        yield admin
    finally:
        await admin.close()


async def log_ranges(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    wait_s: float = PROBE_TIMEOUT_S,
) -> dict[TopicPartition, LogRange]:
    """First offset and true log end of each partition (assigns them to `consumer`)."""
    if not partitions:
        return {}
    consumer.assign(list(partitions))
    starts = await consumer.beginning_offsets(list(partitions))
    # Possibly too small on the embedded broker, but always inside the last batch: fetching from
    # just before it returns that batch, and the response carries the real high watermark.
    naive_ends = await consumer.end_offsets(list(partitions))
    for tp in partitions:
        consumer.seek(tp, max(starts[tp], naive_ends[tp] - 1))
    deadline = time.monotonic() + wait_s
    while any(consumer.highwater(tp) is None for tp in partitions):
        if time.monotonic() > deadline:
            raise BrokerError("the broker did not answer a fetch in time (log end unknown)")
        await consumer.getmany(*partitions, timeout_ms=FETCH_WAIT_MS)
    ranges = {}
    for tp in partitions:
        end = max(int(consumer.highwater(tp) or 0), naive_ends[tp], starts[tp])
        ranges[tp] = LogRange(starts[tp], end)
    return ranges


async def record_at(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, wait_s: float = PROBE_TIMEOUT_S
) -> ConsumerRecord[bytes, bytes] | None:
    """The first record at or after `offset` (the partition must be assigned); None at the end."""
    consumer.seek(tp, offset)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=FETCH_WAIT_MS, max_records=1)
        records = batch.get(tp)
        if records:
            return records[0]
        highwater = consumer.highwater(tp)
        if highwater is not None and offset >= highwater:
            return None
    return None


async def offset_for_time(
    consumer: AIOKafkaConsumer, tp: TopicPartition, timestamp_ms: int, span: LogRange
) -> int:
    """The first offset whose record timestamp is ≥ `timestamp_ms`, or the log end if none is.

    Binary search on record timestamps (`offsets_for_times` is broken on the embedded broker):
    exact when timestamps grow with offsets (CreateTime of one producer), like Kafka's own index.
    """
    low, high = span.start, span.end
    while low < high:
        middle = (low + high) // 2
        record = await record_at(consumer, tp, middle)
        if record is None or record.timestamp >= timestamp_ms:
            high = middle
        else:
            low = record.offset + 1
    return low


async def committed_offsets(
    bootstrap: str, settings: Settings, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """The group's committed offset of each partition (None: never committed)."""
    wanted = list(partitions)
    async with reader(bootstrap, settings, group) as consumer:
        return {tp: await consumer.committed(tp) for tp in wanted}


async def commit_outside(
    bootstrap: str, settings: Settings, group: str, offsets: Mapping[TopicPartition, int]
) -> tuple[dict[TopicPartition, int | None], KafkaError | None]:
    """Commit `offsets` for `group` without joining it; return the offsets read back, and the
    broker's refusal if it refused.

    A commit with no member id, as `kafka-consumer-groups --reset-offsets` sends: accepted while
    the group lists no member, refused (all partitions) while it does.
    """
    async with reader(bootstrap, settings, group) as consumer:
        consumer.assign(list(offsets))
        refused: KafkaError | None = None
        try:
            await consumer.commit(dict(offsets))
        except KafkaError as exc:
            refused = exc
        return {tp: await consumer.committed(tp) for tp in offsets}, refused


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Sets `event` once the group has given this member its partitions."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.event.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.event.set()


@dataclass(frozen=True)
class Membership:
    """Our member of a group, and the other members that rejoined with it (they are live)."""

    consumer: AIOKafkaConsumer
    group: GroupInfo
    others: tuple[str, ...]


@asynccontextmanager
async def joined_member(
    bootstrap: str, settings: Settings, group: str, topics: Sequence[str]
) -> AsyncIterator[Membership]:
    """Join `group` subscribed to `topics`, as the only member if nobody else is live.

    For a job that reads the group's partitions as well as commits (the re-drive, the offset
    guard); a replay only commits, from outside the group (`commit_outside`). Leaving (on exit)
    lets the group's real consumers take their partitions back.
    """
    consumer = await _started_consumer(bootstrap, settings, group)
    try:
        assigned = _Assigned()
        consumer.subscribe(list(topics), listener=assigned)
        broker = settings.broker
        # Joining happens in the consumer's background task; with other live members we may get
        # no partition at all, so the wait ends at a deadline rather than failing.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(broker.session_timeout_s + broker.rebalance_timeout_s + 10):
                await assigned.event.wait()
        async with admin_client(bootstrap, settings) as admin:
            info = await describe_group(admin, group)
        # aiokafka exposes our member id only on its coordinator.
        own = getattr(getattr(consumer, "_coordinator", None), "member_id", None)
        yield Membership(consumer, info, tuple(m for m in info.members if m != own))
    finally:
        await consumer.stop()
