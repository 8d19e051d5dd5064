"""Consumer lag per group and partition, in messages and seconds (SPEC §10).

`collect_lag` is what `personas lag` prints and what the worker's lag monitor exports to
/metrics and /health.

For each partition: the group's committed offset, the log end, lag = end − committed messages,
and lag in seconds = now − timestamp of the oldest unconsumed message (the one at the committed
offset). A partition the group never committed on counts from the log start (the worker's
`auto_offset_reset` is `earliest`) when the group reads its topic: it committed on another
partition of it, or a member is assigned it. Other partitions are not the group's and are left
out.

Status, per partition, in the spirit of Burrow (first rule that holds):

    ERR    the committed offset is beyond the log end: the log was lost (an in-memory broker
           restarted) and the group will silently skip new messages until it is reset
    OK     no lag
    STOP   lag, and the group has no live member: nobody is consuming. Live means the broker
           still lists the member after applying its session timeout (`partition_status` says
           why this is the evidence, and how it is made right on the embedded broker)
    STALL  lag, the committed offset did not move since the previous sample, and the oldest
           unconsumed message is older than `stall_after_s` (needs a previous sample:
           `--watch` and the worker's lag monitor have one)
    WARN   lag, and the oldest unconsumed message is older than `warn_after_s`, or the lag
           grew since the previous sample
    OK     otherwise (lag that is being worked through)

A group's status is its worst partition's, in the order OK < WARN < STALL < STOP < ERR.
Committed offsets come from OffsetFetch and log ends from a fetch's high watermark, which are
right on the embedded broker too. Which topics a group reads is taken from its members'
assignments and, since an idle group has none, the configured topics and their DLQs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.core.errors import InvalidMessage
from config.settings import Settings, dlq_name
from streams.ops.groups import (
    GroupInfo,
    describe_group,
    list_groups,
    live_members_of,
    session_checked,
)
from streams.ops.offsets import (
    LogRange,
    admin_client,
    committed_offsets,
    log_ranges,
    reader,
    record_at,
)
from streams.topics import redrive_group, worker_groups

__all__ = [
    "GroupLag",
    "PartitionLag",
    "Status",
    "collect_lag",
    "group_status",
    "live_member_count",
    "partition_status",
    "partitions_to_measure",
]

log = logging.getLogger("personas.lag")

Status = Literal["OK", "WARN", "STALL", "STOP", "ERR"]
SEVERITY: dict[str, int] = {"OK": 0, "WARN": 1, "STALL": 2, "STOP": 3, "ERR": 4}

WARN_AFTER_S = 60.0
STALL_AFTER_S = 60.0


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int
    lag_messages: int
    lag_seconds: float
    status: Status = "OK"


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    members: int
    status: Status
    partitions: tuple[PartitionLag, ...]
    sampled_at: float

    @property
    def lag_messages(self) -> int:
        return sum(p.lag_messages for p in self.partitions)

    @property
    def lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions), default=0.0)

    def as_dict(self) -> dict[str, object]:
        return {
            "group": self.group, "state": self.state, "members": self.members,
            "status": self.status, "lag_messages": self.lag_messages,
            "lag_seconds": round(self.lag_seconds, 3), "sampled_at": self.sampled_at,
            "partitions": [asdict(p) for p in self.partitions],
        }  # fmt: skip


def partition_status(
    current: PartitionLag,
    members: int,
    previous: PartitionLag | None = None,
    *,
    warn_after_s: float = WARN_AFTER_S,
    stall_after_s: float = STALL_AFTER_S,
) -> Status:
    """One partition's status by the rule in the module docstring.

    `members` counts the group's live members (`live_member_count` of the description that
    `collect_lag` reads after the session check). STOP is decided by the members' sessions, not
    by offsets: a consumer heartbeats while it runs, and a broker drops a member at once when it
    leaves, or when its heartbeats stop for its session timeout (a crash). Kafka applies that
    timeout by itself, so its member list is the live one. The embedded broker applies it only
    while some request for the group arrives, and a worker that was its group's first member
    (generation 0 there) exits without a LeaveGroup (aiokafka sends none at generation 0): it
    stays listed for good. So `collect_lag` first sends the group a heartbeat from no member:
    both brokers refuse it (unknown member) and change nothing else, but the embedded broker
    drops, on the way, every member silent past its session timeout, as it does on each live
    member's heartbeat. A stopped group is thus STOP at most a session timeout after its last
    heartbeat.

    Offsets alone cannot be that evidence: a consumer that is up but stuck and one that is gone
    both leave the committed offset still while the log grows. That is STALL, which is only
    judged when a live member holds the partitions.
    """
    if current.committed is not None and current.committed > current.log_end:
        return "ERR"
    if current.lag_messages <= 0:
        return "OK"
    if members == 0:
        return "STOP"
    if (
        previous is not None
        and previous.committed == current.committed
        and current.lag_seconds >= stall_after_s
    ):
        return "STALL"
    grew = previous is not None and current.lag_messages > previous.lag_messages
    if current.lag_seconds >= warn_after_s or grew:
        return "WARN"
    return "OK"


def live_member_count(info: GroupInfo) -> int:
    """How many members `live_members_of` counts live in the group's description.

    Live only when read after the session check (`collect_lag` does): see `partition_status`.
    """
    return len(live_members_of(info))


def partitions_to_measure(
    committed: Mapping[TopicPartition, int | None], assigned_topics: Iterable[str] = ()
) -> list[TopicPartition]:
    """The partitions whose lag is the group's: those it committed on, and the never-committed
    ones of a topic it reads (committed on another partition of it, or assigned to a member)."""
    read = {tp.topic for tp, offset in committed.items() if offset is not None}
    read.update(assigned_topics)
    return sorted(
        (tp for tp, offset in committed.items() if offset is not None or tp.topic in read),
        key=lambda tp: (tp.topic, tp.partition),
    )


def group_status(partitions: Sequence[PartitionLag]) -> Status:
    """The worst partition status."""
    worst: Status = "OK"
    for part in partitions:
        if SEVERITY[part.status] > SEVERITY[worst]:
            worst = part.status
    return worst


def _candidate_topics(settings: Settings, info: GroupInfo) -> list[str]:
    sources = list(settings.topics.partitions())
    return sorted({*sources, *(dlq_name(topic) for topic in sources), *info.topics})


def _check_known(requested: Sequence[str], on_broker: Sequence[str], settings: Settings) -> None:
    """InvalidMessage (exit 2) naming our groups when a requested group is unknown to the broker
    and none of ours: a typo must not read as "no committed offsets"."""
    ours = [*worker_groups(settings), redrive_group(settings)]
    for name in requested:
        if name not in on_broker and name not in ours:
            raise InvalidMessage(
                "--group", f"unknown group {name!r}: not on the broker and none of ours "
                f"({', '.join(ours)})",
            )  # fmt: skip


async def _groups_to_read(
    bootstrap: str, settings: Settings, groups: Sequence[str] | None
) -> tuple[list[str], dict[str, GroupInfo]]:
    """The groups to report, in order (the worker's own first unless `groups` names them), each
    described with its live members (`session_checked`; `partition_status` says why)."""
    async with admin_client(bootstrap, settings) as admin:
        on_broker = await list_groups(admin)
        if groups:
            _check_known(groups, on_broker, settings)
            names = list(groups)
        else:
            own = worker_groups(settings)
            names = own + [name for name in on_broker if name not in own]
        infos = {
            name: await session_checked(admin, await describe_group(admin, name)) for name in names
        }
    return names, infos


async def _partitions_read_by(
    consumer: AIOKafkaConsumer, settings: Settings, infos: Mapping[str, GroupInfo]
) -> dict[str, list[TopicPartition]]:
    """Each group's candidate partitions: of the topics that exist on the broker."""
    existing = await consumer.topics()
    return {
        name: [
            TopicPartition(topic, p)
            for topic in _candidate_topics(settings, info)
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        for name, info in infos.items()
    }


def _measured(
    committed: Mapping[str, Mapping[TopicPartition, int | None]],
    infos: Mapping[str, GroupInfo],
) -> dict[str, list[TopicPartition]]:
    """Each group's partitions to measure (`partitions_to_measure`)."""
    return {
        name: partitions_to_measure(offsets, infos[name].topics)
        for name, offsets in committed.items()
    }


async def _oldest_unconsumed_age(
    consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, now: float
) -> float:
    """Seconds since the record at `offset` was created (0 when it cannot be read)."""
    record = await record_at(consumer, tp, offset)
    return 0.0 if record is None else max(now - record.timestamp / 1000, 0.0)


async def _measure(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    committed: Mapping[TopicPartition, int | None],
    ranges: Mapping[TopicPartition, LogRange],
    now: float,
) -> list[PartitionLag]:
    """One group's lag on each of `partitions` (status not judged yet)."""
    parts = []
    for tp in partitions:
        offset, span = committed[tp], ranges[tp]
        first_unread = span.start if offset is None else max(offset, span.start)
        lag = max(span.end - first_unread, 0)
        age = await _oldest_unconsumed_age(consumer, tp, first_unread, now) if lag else 0.0
        parts.append(PartitionLag(tp.topic, tp.partition, offset, span.start, span.end, lag, age))
    return parts


def _previous_partitions(
    previous: Mapping[str, GroupLag] | None, group: str
) -> dict[tuple[str, int], PartitionLag]:
    if not previous or group not in previous:
        return {}
    return {(p.topic, p.partition): p for p in previous[group].partitions}


async def collect_lag(
    bootstrap: str,
    settings: Settings,
    groups: Sequence[str] | None = None,
    previous: Mapping[str, GroupLag] | None = None,
    *,
    warn_after_s: float = WARN_AFTER_S,
    stall_after_s: float = STALL_AFTER_S,
) -> list[GroupLag]:
    """Lag of `groups` (default: the worker's groups and every group with offsets on our topics).

    `previous` is the last sample (by group), which STALL and lag growth are judged against.
    Each group's `members` are its live ones (`live_member_count`, after the session check).
    """
    own = worker_groups(settings)
    names, infos = await _groups_to_read(bootstrap, settings, groups)
    results: list[GroupLag] = []
    async with reader(bootstrap, settings) as consumer:
        candidates = await _partitions_read_by(consumer, settings, infos)
        committed = {
            name: await committed_offsets(bootstrap, settings, name, tps)
            for name, tps in candidates.items()
        }
        measured = _measured(committed, infos)
        wanted = {tp for tps in measured.values() for tp in tps}
        ranges = await log_ranges(consumer, sorted(wanted, key=lambda tp: (tp.topic, tp.partition)))
        now = time.time()
        for name in names:
            members = live_member_count(infos[name])
            before = _previous_partitions(previous, name)
            parts = [
                replace(part, status=partition_status(
                    part, members, before.get((part.topic, part.partition)),
                    warn_after_s=warn_after_s, stall_after_s=stall_after_s,
                ))
                for part in await _measure(consumer, measured[name], committed[name], ranges, now)
            ]  # fmt: skip
            if not parts and not groups and name not in own:
                continue  # a group of other topics (another deployment or test) is not ours
            status = group_status(parts)
            results.append(GroupLag(name, infos[name].state, members, status, tuple(parts), now))
    return results
