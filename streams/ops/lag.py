"""`personas lag`: consumer lag per group and partition, in messages and seconds (SPEC §10).

For each partition: the group's committed offset, the log end, lag = end − committed messages,
and lag in seconds = now − timestamp of the oldest unconsumed message (the one at the committed
offset). A group that never committed on a partition is counted from the log start (the
worker's `auto_offset_reset` is `earliest`).

Status, per partition, in the spirit of Burrow (first rule that holds):

    ERR    the committed offset is beyond the log end: the log was lost (an in-memory broker
           restarted) and the group will silently skip new messages until it is reset
    OK     no lag
    STOP   lag, and the group has no member: nobody is consuming
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

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from aiokafka import TopicPartition

from agents.core.codec import dumps
from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.ops.offsets import (
    GroupInfo,
    admin_client,
    committed_offsets,
    describe_group,
    list_groups,
    log_ranges,
    quiet_clients,
    reader,
    record_at,
)
from streams.topics import dlq_name, worker_groups

__all__ = [
    "GroupLag",
    "PartitionLag",
    "Status",
    "collect_lag",
    "command_lag",
    "group_status",
    "partition_status",
]

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
    """One partition's status by the rule in the module docstring."""
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


async def collect_lag(
    bootstrap: str,
    settings: Settings,
    groups: Sequence[str] | None = None,
    previous: Mapping[str, GroupLag] | None = None,
    *,
    warn_after_s: float = WARN_AFTER_S,
    stall_after_s: float = STALL_AFTER_S,
) -> list[GroupLag]:
    """Lag of `groups` (default: the worker's groups and every group with offsets on our topics)."""
    explicit = bool(groups)
    own = worker_groups(settings)
    async with admin_client(bootstrap, settings) as admin:
        names = list(groups) if groups else await list_groups(admin)
        if not explicit:
            names = own + [name for name in names if name not in own]
        infos = {name: await describe_group(admin, name) for name in names}
    results: list[GroupLag] = []
    async with reader(bootstrap, settings) as consumer:
        existing = await consumer.topics()
        all_tps: dict[str, list[TopicPartition]] = {}
        for name, info in infos.items():
            all_tps[name] = [
                TopicPartition(topic, p)
                for topic in _candidate_topics(settings, info)
                if topic in existing
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
        committed = {
            name: await committed_offsets(bootstrap, settings, name, tps)
            for name, tps in all_tps.items()
        }
        used = sorted(
            {tp for name in names for tp, off in committed[name].items() if off is not None},
            key=lambda tp: (tp.topic, tp.partition),
        )
        ranges = await log_ranges(consumer, used)
        now = time.time()
        for name in names:
            info = infos[name]
            before = {(p.topic, p.partition): p for p in previous[name].partitions} if (
                previous and name in previous) else {}  # fmt: skip
            parts = []
            for tp, offset in committed[name].items():
                if offset is None:
                    continue
                span = ranges[tp]
                lag = max(span.end - max(offset, span.start), 0)
                age = 0.0
                if lag:
                    record = await record_at(consumer, tp, max(offset, span.start))
                    if record is not None:
                        age = max(now - record.timestamp / 1000, 0.0)
                part = PartitionLag(tp.topic, tp.partition, offset, span.start, span.end, lag, age)
                status = partition_status(
                    part, len(info.members), before.get((tp.topic, tp.partition)),
                    warn_after_s=warn_after_s, stall_after_s=stall_after_s,
                )  # fmt: skip
                parts.append(PartitionLag(**{**asdict(part), "status": status}))
            if not parts and not explicit and name not in own:
                continue  # a group of other topics (another deployment or test) is not ours
            results.append(GroupLag(
                name, info.state, len(info.members), group_status(parts), tuple(parts), now
            ))  # fmt: skip
    return results


def _print(groups: Sequence[GroupLag]) -> None:
    for group in groups:
        print(f"GROUP {group.group}  status {group.status}  state {group.state}  "
              f"members {group.members}  lag {group.lag_messages:,} msgs / "
              f"{group.lag_seconds:,.1f}s")  # fmt: skip
        if not group.partitions:
            print("  (no committed offsets)")
            continue
        print(f"  {'TOPIC':<32} {'PART':>4} {'COMMITTED':>10} {'END':>10} {'LAG':>8} "
              f"{'LAG_S':>9}  STATUS")  # fmt: skip
        for p in group.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            print(f"  {p.topic:<32} {p.partition:>4} {committed:>10} {p.log_end:>10} "
                  f"{p.lag_messages:>8} {p.lag_seconds:>9.1f}  {p.status}")  # fmt: skip


def command_lag(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    with broker_for(settings, start_embedded=False) as bootstrap:
        previous: dict[str, GroupLag] = {}
        while True:
            groups = asyncio.run(collect_lag(bootstrap, settings, args.group, previous))
            if args.json:
                payload = dumps({"groups": [group.as_dict() for group in groups]})
                sys.stdout.buffer.write(payload + b"\n")
                sys.stdout.flush()
            else:
                _print(groups)
            if args.watch is None:
                return 0
            previous = {group.group: group for group in groups}
            if not args.json:
                print(flush=True)
            time.sleep(max(args.watch, 0.5))
