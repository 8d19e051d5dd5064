"""Dead letters: list them, show one, send them back to their source topic (`personas dlq`).

What a letter holds, copies and superseded letters: `streams.ops.letters`. Everything here goes
by source message: it is listed once, with how many times it was re-driven, shown with its
letters, and re-driven from its newest letter only.

`redrive` sends the original key and bytes back to the source topic, after a fix, with headers
naming the source message, the re-drive count and the letter re-driven (`agents.context.Lineage`).
It sends each letter once: it reads as the consumer group `<app_id>-dlq-redrive` and commits after
the broker has each message, so a second run starts after them; and it skips copies and
superseded letters, so a letter that was re-driven and failed again is not sent again even if
the group's offsets are lost. Unreadable letters are counted and passed over: they are never
re-driven, and do not hold the commit back. It stops at the log end seen when it started. With a
`reason` filter the commit stops at the first letter left behind, so that a later run can still
re-drive it; a letter after that one that was re-driven and did not fail again may be sent again
by that later run, which the agents' idempotent writes absorb.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.context import Address, Lineage
from agents.core.errors import BrokerError, InvalidMessage, WalletError
from config.settings import DLQ_SUFFIX, Settings, dlq_name
from streams.ops.letters import DeadLetter, History, gather_histories, preview
from streams.ops.offsets import LogRange, committed_offsets, joined_member, log_ranges, reader
from streams.producer import started_producer
from streams.topics import redrive_group

__all__ = [
    "DeadLetter",
    "History",
    "ReasonGroup",
    "RedriveReport",
    "find_letter",
    "list_dead_letters",
    "offending_value",
    "preview",
    "redrive",
]

#: Source messages shown per reason by `list_dead_letters` unless asked for all.
SAMPLE_LETTERS = 5
# Re-driven copies in flight before their receipts are awaited and the group commits: one
# send_and_wait per letter would wait out the producer's linger each time.
SEND_WINDOW = 500
#: How long reading the DLQ topics up to their log ends may take before the broker is blamed.
READ_TIMEOUT_S = 60.0
_GOT = re.compile(r"\s*\(got (?P<got>.*)\)\s*$", re.DOTALL)


def _reason_key(reason: str) -> str:
    """The reason without the offending value: `price: Input should be less than 1`."""
    return _GOT.sub("", reason).strip() or "(no reason)"


def offending_value(reason: str) -> str | None:
    """The offending value a reason quotes (`1.5` of `price: … (got 1.5)`), if it quotes one."""
    found = _GOT.search(reason)
    return found.group("got") if found else None


def _dlq_topics(settings: Settings, topic: str | None, option: str = "--topic") -> list[str]:
    """The DLQ topics to look at: of `topic` (a source topic or its .dlq), else of every source.

    InvalidMessage (exit 2) naming `option` and the valid topics when `topic` is neither: a
    typo must not read as "no dead letters".
    """
    sources = list(settings.topics.partitions())
    if not topic:
        return [dlq_name(source) for source in sources]
    source = topic.removesuffix(DLQ_SUFFIX)
    if source not in sources:
        raise InvalidMessage(
            option, f"{topic!r} is not one of our topics: {', '.join(sources)} "
            f"(or their {DLQ_SUFFIX} topics)",
        )  # fmt: skip
    return [dlq_name(source)]


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
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=200)
                for tp, got in batch.items():
                    records.extend(r for r in got if r.offset < ends[tp])
                todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    except TimeoutError:
        topics = ", ".join(sorted({tp.topic for tp in todo}))
        raise BrokerError(
            f"the broker did not return the dead letters of {topics} up to their log end "
            f"within {READ_TIMEOUT_S:g}s"
        ) from None
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))


async def _scan(
    bootstrap: str, settings: Settings, topics: Sequence[str]
) -> tuple[dict[TopicPartition, LogRange], list[DeadLetter]]:
    """Every letter of the DLQ `topics` up to their log ends now, and those ranges."""
    async with reader(bootstrap, settings) as consumer:
        tps = await _existing(consumer, topics)
        ranges = await log_ranges(consumer, tps)
        for tp, span in ranges.items():
            consumer.seek(tp, span.start)
        records = await _read_until(consumer, {tp: span.end for tp, span in ranges.items()})
    return ranges, [DeadLetter.from_record(record) for record in records]


async def _read_histories(
    bootstrap: str, settings: Settings, topics: Sequence[str]
) -> list[History]:
    """The histories of the DLQ `topics`, each marked re-driven or not by the re-drive group."""
    ranges, letters = await _scan(bootstrap, settings, topics)
    if not ranges:
        return []
    committed = await committed_offsets(bootstrap, settings, redrive_group(settings), list(ranges))
    histories = gather_histories(letters)
    for history in histories:
        at = history.latest.at
        done = committed.get(TopicPartition(at.topic, at.partition))
        history.redriven = history.origin is not None and done is not None and at.offset < done
    return histories


@dataclass
class ReasonGroup:
    """Source messages of one topic dead-lettered for one reason (without the value)."""

    topic: str  # the source topic (the DLQ topic for unreadable letters)
    reason: str
    error: str
    count: int = 0
    pending: int = 0
    #: the first source messages of the group (all of them when asked for all)
    letters: list[History] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "reason": self.reason, "error": self.error,
                "count": self.count, "pending": self.pending,
                "letters": [history.as_dict() for history in self.letters]}  # fmt: skip


async def list_dead_letters(
    bootstrap: str,
    settings: Settings,
    topic: str | None = None,
    reason: str | None = None,
    examples: int | None = SAMPLE_LETTERS,
) -> tuple[list[ReasonGroup], int]:
    """Dead-lettered source messages grouped by (topic, reason, error); the groups and the total.

    Each source message counts once, however many letters it has; `examples` of them are kept
    per group (None: all). `reason` filters on the newest letter's reason, ignoring case.
    """
    groups: dict[tuple[str, str, str], ReasonGroup] = {}
    total = 0
    for history in await _read_histories(bootstrap, settings, _dlq_topics(settings, topic)):
        latest = history.latest
        if reason and reason.lower() not in latest.reason.lower():
            continue
        total += 1
        key = (history.address.topic, _reason_key(latest.reason), latest.error)
        group = groups.setdefault(key, ReasonGroup(*key))
        group.count += 1
        group.pending += history.status == "pending"
        if examples is None or len(group.letters) < examples:
            group.letters.append(history)
    ordered = sorted(groups.values(), key=lambda g: (g.topic, -g.count, g.reason))
    return ordered, total


async def find_letter(
    bootstrap: str, settings: Settings, address: str
) -> tuple[DeadLetter, History]:
    """The letter at `address` and its source message's history.

    `address` is a source message's `topic:partition:offset` (its newest letter), or a letter's
    own place in `<topic>.dlq`. InvalidMessage (exit 2) when it is not an address of our topics;
    WalletError when no letter is there.
    """
    try:
        where = Address.parse(address)
    except ValueError:
        raise InvalidMessage(
            "ADDRESS", f"expected topic:partition:offset, got {address!r}"
        ) from None
    topics = _dlq_topics(settings, where.topic, "ADDRESS")
    for history in await _read_histories(bootstrap, settings, topics):
        if history.origin == where:
            return history.latest, history
        for letter in (*history.letters, *history.copies):
            if letter.at == where:
                return letter, history
    raise WalletError(f"no dead letter at {where} (`personas dlq list` lists them)")


@dataclass
class RedriveReport:
    """What one re-drive sent (by source topic), skipped and left in place."""

    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: letters left out by the `reason` filter: the commit stops at the first, for a later run
    left_behind: int = 0
    #: not dead-letter envelopes: never re-driven, and passed over by the commit
    unreadable: int = 0
    #: letters re-driven before that failed again: their newer letter is the one to re-drive
    already_redriven: int = 0
    copies: int = 0  # a letter sent twice by a worker killed before its commit
    letters: list[Address] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "total_sent": sum(self.sent.values()),
                "left_behind": self.left_behind, "unreadable": self.unreadable,
                "already_redriven": self.already_redriven, "copies": self.copies,
                "letters": [str(at) for at in self.letters[:1000]]}  # fmt: skip


def _partition_of(at: Address) -> TopicPartition:
    return TopicPartition(at.topic, at.partition)


@dataclass
class _Redrive:
    """One re-drive run: sends the letters it is given, and commits behind the broker's receipts.

    A partition's commit moves past each letter taken, until a letter is left behind
    (`held`): from then on it stays where it was, so a later run still sees that letter.
    """

    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    reason: str | None
    history_of: dict[Address, History]
    report: RedriveReport = field(default_factory=RedriveReport)
    receipts: list[asyncio.Future[Any]] = field(default_factory=list)
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    held: set[TopicPartition] = field(default_factory=set)

    async def take(self, letter: DeadLetter) -> None:
        tp = _partition_of(letter.at)
        if not await self._redrive_one(letter):
            self.held.add(tp)
        elif tp not in self.held:
            self.commit[tp] = letter.at.offset + 1
        if len(self.receipts) >= SEND_WINDOW:
            await self.flush()

    async def _redrive_one(self, letter: DeadLetter) -> bool:
        """Send `letter` back if it is the one to re-drive; False when it is left behind."""
        report = self.report
        if letter.origin is None:
            report.unreadable += 1
            return True
        role = self.history_of[letter.at].role(letter)
        if role == "copy":
            report.copies += 1
        elif role == "superseded":
            report.already_redriven += 1
        elif self.reason and self.reason.lower() not in letter.reason.lower():
            report.left_behind += 1
            return False
        else:
            lineage = Lineage(letter.origin, letter.redrives + 1, letter.at)
            headers = [*letter.headers, *lineage.headers()]
            self.receipts.append(
                await self.producer.send(
                    letter.origin.topic, letter.value, key=letter.key, headers=headers
                )
            )
            report.sent[letter.origin.topic] += 1
            report.letters.append(letter.at)
        return True

    async def flush(self) -> None:
        """Wait for the broker to have every copy sent, then commit past them."""
        await asyncio.gather(*self.receipts)
        self.receipts.clear()
        if self.commit:
            await self.consumer.commit(dict(self.commit))
            self.commit.clear()


async def _start_offsets(
    consumer: AIOKafkaConsumer, group: str, ranges: dict[TopicPartition, LogRange]
) -> dict[TopicPartition, int]:
    """Where this run starts on each DLQ partition: after the letters of the runs before."""
    if set(ranges) - consumer.assignment():
        raise WalletError(f"group {group} did not get every DLQ partition; try again")
    starts = {}
    for tp, span in ranges.items():
        done = await consumer.committed(tp)
        starts[tp] = span.start if done is None else done
    return starts


async def redrive(
    bootstrap: str, settings: Settings, topic: str | None = None, reason: str | None = None
) -> RedriveReport:
    """Send dead letters back to their source topic, once; see the module docstring."""
    ranges, letters = await _scan(bootstrap, settings, _dlq_topics(settings, topic))
    if not ranges:
        return RedriveReport()
    history_of = {
        letter.at: history for history in gather_histories(letters) for letter in
        (*history.letters, *history.copies)
    }  # fmt: skip
    group = redrive_group(settings)
    topics = sorted({tp.topic for tp in ranges})
    async with (
        joined_member(bootstrap, settings, group, topics) as member,
        started_producer(bootstrap, settings, "dlq-redrive") as producer,
    ):
        if member.others:
            raise WalletError(f"another re-drive is running (group {group} has live members)")
        starts = await _start_offsets(member.consumer, group, ranges)
        run = _Redrive(member.consumer, producer, reason, history_of)
        for letter in letters:
            if letter.at.offset >= starts[_partition_of(letter.at)]:
                await run.take(letter)
        await run.flush()
    return run.report
