"""Dead letters: list them, show one, send them back to their source topic (`personas dlq`).

A dead letter (`agents.context.dead_letter_envelope`) is JSON with the reason, the error class,
the source topic/partition/offset, the time, and the original bytes (`value`, or `value_base64`
when they were not UTF-8); its key is the original key. The letter of a re-driven copy that
failed again names the same source message and adds `redrives`, the times it was re-driven.

One source message may have several letters. Dead-lettering is at-least-once (a worker killed
between the DLQ send and its commit sends a letter again: a *copy*, same source and re-drive
count), and each re-drive of a still-bad message adds a letter one re-drive later, which
*supersedes* the one before. `History` gathers a source message's letters, and everything here
goes by source message: it is listed once, with how many times it was re-driven, shown with its
letters, and re-driven from its newest letter only.

`redrive` sends the original key and bytes back to the source topic, after a fix, with headers
naming the source message, the re-drive count and the letter re-driven (`agents.context.Lineage`).
It sends each letter once: it reads as the consumer group `<app_id>-dlq-redrive` and commits after
the broker has each message, so a second run starts after them; and it skips copies and
superseded letters, so a letter that was re-driven and failed again is not sent again even if
the group's offsets are lost. It stops at the log end seen when it started. With a `reason`
filter the commit stops at the first letter left behind, so that a later run can still re-drive
it; a letter after that one that was re-driven and did not fail again may be sent again by that
later run, which the agents' idempotent writes absorb.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.context import Address, Lineage
from agents.core.codec import loads
from agents.core.errors import InvalidMessage, WalletError
from config.settings import Settings
from streams.ops.offsets import LogRange, committed_offsets, joined_member, log_ranges, reader
from streams.producer import started_producer
from streams.topics import DLQ_SUFFIX, dlq_name

__all__ = [
    "DeadLetter",
    "History",
    "ReasonGroup",
    "RedriveReport",
    "dlq_topics",
    "find_letter",
    "list_dead_letters",
    "preview",
    "reason_key",
    "redrive",
    "redrive_group",
]

#: Source messages shown per reason by `list_dead_letters` unless asked for all.
SAMPLE_LETTERS = 5
PREVIEW_CHARS = 48
UNREADABLE = "UnreadableEnvelope"
# Re-driven copies in flight before their receipts are awaited and the group commits: one
# send_and_wait per letter waits out the producer's linger each time (~200 letters a second).
SEND_WINDOW = 500
_GOT = re.compile(r"\s*\(got (?P<got>.*)\)\s*$", re.DOTALL)


def redrive_group(settings: Settings) -> str:
    """The consumer group that remembers what was re-driven."""
    return f"{settings.worker.app_id}-dlq-redrive"


def reason_key(reason: str) -> str:
    """The reason without the offending value: `price: Input should be less than 1`."""
    return _GOT.sub("", reason).strip() or "(no reason)"


def offending_value(reason: str) -> str | None:
    """The offending value a reason quotes (`1.5` of `price: … (got 1.5)`), if it quotes one."""
    found = _GOT.search(reason)
    return found.group("got") if found else None


def preview(value: bytes, width: int = PREVIEW_CHARS) -> str:
    """The start of `value` on one line: its text if it is UTF-8, else the bytes' repr."""
    if not value:
        return "(empty)"
    try:
        text = " ".join(value.decode().split())
    except UnicodeDecodeError:
        text = repr(value[: width * 4])
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, decoded."""

    at: Address  # the letter's own place, in `<topic>.dlq`
    key: bytes | None
    reason: str
    error: str
    origin: Address | None  # the source message; None when the envelope is unreadable
    redrives: int
    failed_at: float | None
    value: bytes
    envelope: dict[str, Any]
    #: the source message's own headers, sent back with it
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        at = Address(record.topic, record.partition, record.offset)
        try:
            envelope = loads(record.value or b"")
            if not isinstance(envelope, dict):
                raise InvalidMessage("<json>", "expected an object")
            if "value_base64" in envelope:
                value = base64.b64decode(envelope["value_base64"], validate=True)
            else:
                value = str(envelope.get("value", "")).encode()
            origin = Address(
                str(envelope["topic"]), int(envelope["partition"]), int(envelope["offset"])
            )
            redrives = int(envelope.get("redrives", 0))
            headers = tuple(
                (str(name), base64.b64decode(raw, validate=True))
                for name, raw in envelope.get("headers", ())
            )
        except (InvalidMessage, KeyError, TypeError, ValueError) as exc:
            # Not our envelope: listed under its own reason, never re-driven.
            return cls(at, record.key, f"unreadable envelope: {exc}", UNREADABLE, None, 0,
                       None, record.value or b"", {})  # fmt: skip
        failed_at = envelope.get("failed_at")
        return cls(
            at, record.key, str(envelope.get("reason", "")), str(envelope.get("error", "")),
            origin, redrives, float(failed_at) if isinstance(failed_at, int | float) else None,
            value, envelope, headers,
        )  # fmt: skip


@dataclass
class History:
    """One source message's dead letters: one per re-drive count, oldest first, and copies."""

    origin: Address | None  # None: one unreadable letter, which has no source message
    letters: list[DeadLetter] = field(default_factory=list)
    copies: list[DeadLetter] = field(default_factory=list)
    #: the newest letter was re-driven (it lies before the re-drive group's committed offset):
    #: its copy is in flight, or was stored this time
    redriven: bool = False

    @property
    def latest(self) -> DeadLetter:
        return self.letters[-1]

    @property
    def redrives(self) -> int:
        """How many times the source message has been re-driven."""
        return self.latest.redrives + (1 if self.redriven else 0)

    @property
    def status(self) -> str:
        if self.origin is None:
            return "unreadable"
        return "redriven" if self.redriven else "pending"

    @property
    def address(self) -> Address:
        """The source message, or for an unreadable letter the letter itself."""
        return self.origin or self.latest.at

    def add(self, letter: DeadLetter) -> None:
        if any(kept.redrives == letter.redrives for kept in self.letters):
            self.copies.append(letter)
        else:
            self.letters.append(letter)
            self.letters.sort(key=lambda kept: kept.redrives)

    def role(self, letter: DeadLetter) -> str:
        """`latest` (the one to re-drive), `superseded` (re-driven already) or `copy`."""
        if any(copy.at == letter.at for copy in self.copies):
            return "copy"
        return "latest" if letter.at == self.latest.at else "superseded"

    def as_dict(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "source": str(self.origin) if self.origin else None,
            "letter": str(latest.at),
            "first_letter": str(self.letters[0].at),
            "status": self.status,
            "redrives": self.redrives,
            "reason": latest.reason,
            "error": latest.error,
            "failed_at": latest.failed_at,
            "value_preview": preview(latest.value),
        }


def _histories(letters: Iterable[DeadLetter]) -> list[History]:
    """Letters gathered by source message, in the order of each one's first letter."""
    by_origin: dict[Address, History] = {}
    found: list[History] = []
    for letter in sorted(letters, key=lambda letter: letter.at):
        if letter.origin is None:
            found.append(History(None, [letter]))
            continue
        history = by_origin.get(letter.origin)
        if history is None:
            history = by_origin[letter.origin] = History(letter.origin)
            found.append(history)
        history.add(letter)
    return found


def dlq_topics(settings: Settings, topic: str | None, option: str = "--topic") -> list[str]:
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
    async with asyncio.timeout(60):
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=200)
            for tp, got in batch.items():
                records.extend(r for r in got if r.offset < ends[tp])
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
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
    histories = _histories(letters)
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
    for history in await _read_histories(bootstrap, settings, dlq_topics(settings, topic)):
        latest = history.latest
        if reason and reason.lower() not in latest.reason.lower():
            continue
        total += 1
        key = (history.address.topic, reason_key(latest.reason), latest.error)
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
    topics = dlq_topics(settings, where.topic, "ADDRESS")
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
    left: int = 0
    unreadable: int = 0
    #: letters re-driven before that failed again: their newer letter is the one to re-drive
    superseded: int = 0
    copies: int = 0  # a letter sent twice by a worker killed before its commit
    letters: list[Address] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "total_sent": sum(self.sent.values()),
                "left_behind": self.left, "unreadable": self.unreadable,
                "already_redriven": self.superseded, "copies": self.copies,
                "letters": [str(at) for at in self.letters[:1000]]}  # fmt: skip


async def redrive(
    bootstrap: str, settings: Settings, topic: str | None = None, reason: str | None = None
) -> RedriveReport:
    """Send dead letters back to their source topic, once; see the module docstring."""
    report = RedriveReport()
    ranges, letters = await _scan(bootstrap, settings, dlq_topics(settings, topic))
    if not ranges:
        return report
    history_of = {
        letter.at: history for history in _histories(letters) for letter in
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
        consumer = member.consumer
        if set(ranges) - consumer.assignment():
            raise WalletError(f"group {group} did not get every DLQ partition; try again")
        starts = {}
        for tp, span in ranges.items():
            done = await consumer.committed(tp)
            starts[tp] = span.start if done is None else done
        receipts: list[asyncio.Future[Any]] = []
        commit: dict[TopicPartition, int] = {}
        stuck: set[TopicPartition] = set()  # the commit stops at the first letter left behind

        async def flush() -> None:
            await asyncio.gather(*receipts)
            receipts.clear()
            if commit:
                await consumer.commit(dict(commit))
                commit.clear()

        for letter in letters:
            tp = TopicPartition(letter.at.topic, letter.at.partition)
            if letter.at.offset < starts[tp]:
                continue
            if letter.origin is None:
                report.unreadable += 1
                report.left += 1
                stuck.add(tp)
                continue
            role = history_of[letter.at].role(letter)
            if role == "copy":
                report.copies += 1
            elif role == "superseded":
                report.superseded += 1
            elif reason and reason.lower() not in letter.reason.lower():
                report.left += 1
                stuck.add(tp)
                continue
            else:
                lineage = Lineage(letter.origin, letter.redrives + 1, letter.at)
                headers = [*letter.headers, *lineage.headers()]
                receipts.append(
                    await producer.send(
                        letter.origin.topic, letter.value, key=letter.key, headers=headers
                    )
                )
                report.sent[letter.origin.topic] += 1
                report.letters.append(letter.at)
            if tp not in stuck:
                commit[tp] = letter.at.offset + 1
            if len(receipts) >= SEND_WINDOW:
                await flush()
        await flush()
    return report
