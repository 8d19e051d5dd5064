"""What every agent is given, and what they share: decode-or-reject and dead letters.

An agent is a module with a plain function `handle(batch, context, …) -> Awaitable[None]`. It
decodes the batch (and starts any computation) when called; the awaitable it returns stores the
batch, waits for the broker's receipts of what it sent and dead-letters what it rejected. The
consumer calling it (`streams.consumer`) commits the batch's offsets only after that awaitable is
done: nothing is acknowledged before the store committed.

A re-driven message (`streams.ops.dlq.redrive`) carries its lineage in Kafka headers: the source
message it is a copy of, how many times that message has been re-driven, and the dead letter it
re-drives. When it fails again its dead letter names the same source message with that re-drive
count, so `personas dlq` sees one bad message re-driven n times, not n + 1 bad messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel

from agents.core.codec import decode, dumps
from agents.core.errors import InvalidMessage
from agents.metrics import AgentMetrics
from agents.retry import Retry
from agents.store import Store
from config.settings import Settings, dlq_name

__all__ = [
    "LETTER_HEADER",
    "LINEAGE_HEADERS",
    "ORIGIN_HEADER",
    "REDRIVES_HEADER",
    "Address",
    "AgentContext",
    "Clock",
    "Headers",
    "Lineage",
    "Message",
    "Rejected",
    "Sender",
    "dead_letter_envelope",
    "decode_each",
    "lineage",
    "worker_name",
]

log = logging.getLogger("personas.agents")

ModelT = TypeVar("ModelT", bound=BaseModel)
#: Seconds since the epoch; injected so that tests fix the time rows are stamped with.
Clock: TypeAlias = Callable[[], float]
#: Kafka record headers, as aiokafka gives and takes them.
Headers: TypeAlias = Sequence[tuple[str, bytes]]


def worker_name() -> str:
    """This worker as the store names it (a run's shards, the partitions it holds): host and
    process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: `topic:partition:offset` of the source message a re-driven copy stands for.
ORIGIN_HEADER = "personas-dlq-origin"
#: How many times that source message has been re-driven, this copy included (1, 2, …).
REDRIVES_HEADER = "personas-dlq-redrives"
#: `topic:partition:offset` of the dead letter this copy re-drives (in `<topic>.dlq`).
LETTER_HEADER = "personas-dlq-letter"
LINEAGE_HEADERS = frozenset({ORIGIN_HEADER, REDRIVES_HEADER, LETTER_HEADER})


class Message(Protocol):
    """One consumed message; aiokafka's ConsumerRecord is one."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


Rejected: TypeAlias = tuple[Message, BaseException]


class Sender(Protocol):
    """Queues a message; the awaitable it returns resolves once the broker has the message.

    The message goes to `partition` if given, else to the one its key hashes to."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True, order=True)
class Address:
    """A message's place in the log, written `topic:partition:offset`."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """`topic:partition:offset` (a topic name has no colon); ValueError if it is not one."""
        topic, partition, offset = text.strip().rsplit(":", 2)
        address = cls(topic, int(partition), int(offset))
        if not topic or address.partition < 0 or address.offset < 0:
            raise ValueError(f"not topic:partition:offset: {text!r}")
        return address


@dataclass(frozen=True)
class Lineage:
    """The source message a consumed message stands for, and how often it was re-driven."""

    origin: Address
    redrives: int = 0
    #: the dead letter the message re-drives (None for a message as first published)
    letter: Address | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """The headers that carry this lineage (none for a message as first published)."""
        if not self.redrives:
            return []
        headers = [(ORIGIN_HEADER, str(self.origin).encode()),
                   (REDRIVES_HEADER, str(self.redrives).encode())]  # fmt: skip
        if self.letter is not None:
            headers.append((LETTER_HEADER, str(self.letter).encode()))
        return headers


def _headers(message: Message) -> Headers:
    # getattr: a stand-in message without headers (a test's, a tool's) is an original.
    return getattr(message, "headers", None) or ()


def lineage(message: Message) -> Lineage:
    """The message's lineage: from its re-drive headers if it has valid ones, else itself.

    Headers that do not parse, or that name another topic than the message's own (a re-driven
    copy goes back to its source topic), are ignored: the message counts as an original.
    """
    itself = Lineage(Address(message.topic, message.partition, message.offset))
    found = dict(_headers(message))
    try:
        origin = Address.parse(found[ORIGIN_HEADER].decode())
        redrives = int(found[REDRIVES_HEADER])
        letter = found.get(LETTER_HEADER)
        redriven = Address.parse(letter.decode()) if letter is not None else None
    # A header without a value (None) or of another type is as unreadable as a malformed one.
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return itself
    if origin.topic != message.topic or redrives < 1:
        return itself
    return Lineage(origin, redrives, redriven)


def decode_each(
    model: type[ModelT], batch: Sequence[Message]
) -> tuple[list[tuple[Message, ModelT]], list[Rejected]]:
    """Every message validated into `model`; those that fail are returned with their error."""
    accepted: list[tuple[Message, ModelT]] = []
    rejected: list[Rejected] = []
    for message in batch:
        try:
            accepted.append((message, decode(model, message.value)))
        except InvalidMessage as exc:
            rejected.append((message, exc))
    return accepted, rejected


def dead_letter_envelope(message: Message, error: BaseException, failed_at: float) -> bytes:
    """The DLQ value (SPEC §2): the original bytes plus reason, error, topic, partition, offset.

    topic/partition/offset name the source message. For a re-driven copy that is the message it
    is a copy of (`lineage`); the envelope then adds `redrives` (how many times it has been
    re-driven), `redriven_letter` (the letter it re-drove) and `redriven_copy` (where the copy
    was consumed), all as `topic:partition:offset` but the count. The message's own headers,
    if it had any besides the lineage, are kept in `headers` as [name, base64 value] pairs, so
    that a re-drive sends them back too.
    """
    raw = message.value if isinstance(message.value, bytes) else b""
    line = lineage(message)
    envelope: dict[str, Any] = {
        "reason": str(error),
        "error": type(error).__name__,
        "topic": line.origin.topic,
        "partition": line.origin.partition,
        "offset": line.origin.offset,
        "failed_at": failed_at,
    }
    if line.redrives:
        envelope["redrives"] = line.redrives
        if line.letter is not None:
            envelope["redriven_letter"] = str(line.letter)
        envelope["redriven_copy"] = str(Address(message.topic, message.partition, message.offset))
    own = [(name, value) for name, value in _headers(message) if name not in LINEAGE_HEADERS]
    if own:
        envelope["headers"] = [
            [name, base64.b64encode(value or b"").decode()] for name, value in own
        ]
    try:
        envelope["value"] = raw.decode()
    except UnicodeDecodeError:
        envelope["value_base64"] = base64.b64encode(raw).decode()
    return dumps(envelope)


@dataclass
class AgentContext:
    """One worker's store, sender, metrics, retry policy and clock, shared by its agents."""

    settings: Settings
    store: Store
    sender: Sender
    metrics: AgentMetrics
    retry: Retry
    clock: Clock = time.time

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Send rejected messages to their DLQs and wait until the broker has them all.

        Sent together and awaited once: one at a time, each would wait out the producer's linger,
        which held a burst of bad input to a trickle of dead letters. A transient error re-sends
        the lot; a dead letter is identified by its source topic/partition/offset and re-drive
        count, so a copy is harmless (delivery is at-least-once anyway: a crash before the commit
        re-sends it too). A letter carries its lineage's headers too (`Lineage.headers`).

        `personas_dead_letters_total` counts source messages: a re-driven copy that fails again
        is the same bad message, already counted when it was first dead-lettered.
        """
        if not rejected:
            return
        now = self.clock()
        letters = []
        for message, error in rejected:
            line = lineage(message)
            if line.redrives:
                log.warning(
                    "dead-lettered %s[%d] offset %d again (re-drive %d of %s): %s",
                    message.topic, message.partition, message.offset, line.redrives,
                    line.origin, error,
                )  # fmt: skip
            else:
                log.warning(
                    "dead-lettered %s[%d] offset %d: %s",
                    message.topic, message.partition, message.offset, error,
                )  # fmt: skip
            key = message.key if isinstance(message.key, bytes) else None
            value = dead_letter_envelope(message, error, now)
            letters.append((message.topic, key, value, line))

        async def send() -> None:
            receipts = [
                await self.sender.send(dlq_name(source), key, value, line.headers() or None)
                for source, key, value, line in letters
            ]
            await asyncio.gather(*receipts)

        await self.retry("dead-letter", send)
        for source, _, _, line in letters:
            if not line.redrives:
                self.metrics.dead_letters.labels(source).inc()
