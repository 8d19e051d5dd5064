"""Dead letters: list them by reason and send them back to their source topic (`personas dlq`).

A dead letter (`streams.runtime.dead_letter_envelope`) is JSON with the reason, the error class,
the source topic/partition/offset, the time, and the original bytes (`value`, or
`value_base64` when they were not UTF-8); its key is the original key.

`list_dead_letters` groups them by reason (the reason without the offending value, so that one
kind of failure is one line), with counts and sample offsets. Dead-lettering is at-least-once (a
worker killed between the DLQ send and its commit sends a letter again), so letters are counted,
listed and re-driven once per source topic/partition/offset.

`redrive` sends the original key and bytes back to the source topic, after a fix. It is
idempotent: it reads as the consumer group `<app_id>-dlq-redrive` and commits after the broker
has each message, so a second run sends nothing again. It stops at the log end seen when it
started (a message that fails again is dead-lettered again, and is not re-driven in a loop).
With a `reason` filter, the commit stops at the first dead letter left behind, so a later run
can still re-drive it; re-driven letters after that one may be sent twice, which the agents'
idempotent writes absorb.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.core.codec import loads
from agents.core.errors import InvalidMessage, WalletError
from config.settings import Settings
from streams.ops.offsets import LogRange, joined_member, log_ranges, reader
from streams.producer import publisher
from streams.topics import DLQ_SUFFIX, dlq_name

__all__ = [
    "DeadLetter",
    "ReasonGroup",
    "RedriveReport",
    "dlq_topics",
    "list_dead_letters",
    "reason_key",
    "redrive",
    "redrive_group",
]

SAMPLE_OFFSETS = 5
_GOT = re.compile(r"\s*\(got .*\)\s*$", re.DOTALL)


def redrive_group(settings: Settings) -> str:
    """The consumer group that remembers what was re-driven."""
    return f"{settings.worker.app_id}-dlq-redrive"


def reason_key(reason: str) -> str:
    """The reason without the offending value: `price: Input should be less than 1`."""
    return _GOT.sub("", reason).strip() or "(no reason)"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, decoded."""

    dlq_topic: str
    dlq_offset: int
    key: bytes | None
    reason: str
    error: str
    topic: str
    partition: int | None
    offset: int | None
    failed_at: float | None
    value: bytes

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        try:
            envelope = loads(record.value or b"")
            if not isinstance(envelope, dict):
                raise InvalidMessage("<json>", "expected an object")
            if "value_base64" in envelope:
                value = base64.b64decode(envelope["value_base64"])
            else:
                value = str(envelope.get("value", "")).encode()
            source = str(envelope["topic"])
        except (InvalidMessage, KeyError, ValueError) as exc:
            # Not our envelope: listed under its own reason, never re-driven.
            return cls(record.topic, record.offset, record.key, f"unreadable envelope: {exc}",
                       "UnreadableEnvelope", "", None, None, None, b"")  # fmt: skip
        return cls(
            record.topic, record.offset, record.key, str(envelope.get("reason", "")),
            str(envelope.get("error", "")), source, envelope.get("partition"),
            envelope.get("offset"), envelope.get("failed_at"), value,
        )  # fmt: skip

    def copy_of(self, seen: set[tuple[str, int, int]]) -> bool:
        """True if a letter for the same source message is in `seen` (else it is added to it).

        Dead-lettering is at-least-once: a worker killed between the DLQ send and its offset
        commit sends the letter again. The source topic/partition/offset identify the message.
        """
        if not self.topic or self.partition is None or self.offset is None:
            return False
        source = (self.topic, self.partition, self.offset)
        if source in seen:
            return True
        seen.add(source)
        return False

    @property
    def redrivable(self) -> bool:
        return bool(self.topic) and self.error != "UnreadableEnvelope"


@dataclass
class ReasonGroup:
    """Dead letters of one DLQ topic with one reason and error class."""

    topic: str
    reason: str
    error: str
    count: int = 0
    sample_offsets: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "reason": self.reason, "error": self.error,
                "count": self.count, "sample_offsets": self.sample_offsets}  # fmt: skip


def dlq_topics(settings: Settings, topic: str | None) -> list[str]:
    """The DLQ topics to look at: of `topic` (a source or a DLQ name), else of every source."""
    if topic:
        return [topic if topic.endswith(DLQ_SUFFIX) else dlq_name(topic)]
    return [dlq_name(source) for source in settings.topics.partitions()]


async def _existing(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    known = await consumer.topics()
    return [
        TopicPartition(topic, p)
        for topic in topics
        if topic in known
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records from each partition's current position up to `ends` (exclusive)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    todo = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    async with asyncio.timeout(60):
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=200)
            for tp, got in batch.items():
                records.extend(r for r in got if r.offset < ends[tp])
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


async def list_dead_letters(
    bootstrap: str, settings: Settings, topic: str | None = None, reason: str | None = None
) -> tuple[list[ReasonGroup], int]:
    """Dead letters grouped by (DLQ topic, reason); return the groups and the total."""
    async with reader(bootstrap, settings) as consumer:
        tps = await _existing(consumer, dlq_topics(settings, topic))
        ranges = await log_ranges(consumer, tps)
        for tp, span in ranges.items():
            consumer.seek(tp, span.start)
        records = await _read_until(consumer, {tp: span.end for tp, span in ranges.items()})
    groups: dict[tuple[str, str, str], ReasonGroup] = {}
    total = 0
    seen: set[tuple[str, int, int]] = set()
    for record in records:
        letter = DeadLetter.from_record(record)
        if reason and reason.lower() not in letter.reason.lower():
            continue
        if letter.copy_of(seen):
            continue
        total += 1
        key = (letter.dlq_topic, reason_key(letter.reason), letter.error)
        group = groups.setdefault(key, ReasonGroup(*key))
        group.count += 1
        if len(group.sample_offsets) < SAMPLE_OFFSETS:
            group.sample_offsets.append(letter.dlq_offset)
    ordered = sorted(groups.values(), key=lambda g: (g.topic, -g.count, g.reason))
    return ordered, total


@dataclass
class RedriveReport:
    """What one re-drive sent (by source topic) and left in place."""

    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    left: int = 0
    unreadable: int = 0
    offsets: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "total_sent": sum(self.sent.values()),
                "left_behind": self.left, "unreadable": self.unreadable,
                "dlq_offsets": [f"{t}@{o}" for t, o in self.offsets[:1000]]}  # fmt: skip


async def redrive(
    bootstrap: str, settings: Settings, topic: str | None = None, reason: str | None = None
) -> RedriveReport:
    """Send dead letters back to their source topic, once; see the module docstring."""
    report = RedriveReport()
    async with reader(bootstrap, settings) as probe:
        tps = await _existing(probe, dlq_topics(settings, topic))
        ranges: dict[TopicPartition, LogRange] = await log_ranges(probe, tps)
    if not tps:
        return report
    group = redrive_group(settings)
    topics = sorted({tp.topic for tp in tps})
    async with (
        joined_member(bootstrap, settings, group, topics) as member,
        publisher(bootstrap, settings) as pub,
    ):
        if member.others:
            raise WalletError(f"another re-drive is running (group {group} has live members)")
        consumer = member.consumer
        assigned = consumer.assignment()
        if set(tps) - assigned:
            raise WalletError(f"group {group} did not get every DLQ partition; try again")
        ends = {tp: ranges[tp].end for tp in tps}
        seen: set[tuple[str, int, int]] = set()
        for record in await _read_until(consumer, ends):
            tp = TopicPartition(record.topic, record.partition)
            letter = DeadLetter.from_record(record)
            stuck = report.left > 0  # per run: the commit stops at the first letter left behind
            if letter.copy_of(seen):  # a copy of a letter already sent in this run
                if not stuck:
                    await consumer.commit({tp: record.offset + 1})
                continue
            if not letter.redrivable:
                report.unreadable += 1
                report.left += 1
                continue
            if reason and reason.lower() not in letter.reason.lower():
                report.left += 1
                continue
            await pub.send_raw(letter.topic, letter.value, key=letter.key)
            report.sent[letter.topic] += 1
            report.offsets.append((record.topic, record.offset))
            if not stuck:
                await consumer.commit({tp: record.offset + 1})
    return report
