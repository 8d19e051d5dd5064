"""What every agent is given, and what they share: decode-or-reject and dead letters.

An agent is a module with a plain function `handle(batch, context, …) -> Awaitable[None]`. It
decodes the batch (and starts any computation) when called; the awaitable it returns stores the
batch, waits for the broker's receipts of what it sent and dead-letters what it rejected. The
consumer calling it (`streams.consumer`) commits the batch's offsets only after that awaitable is
done: nothing is acknowledged before the store committed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
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
    "AgentContext",
    "Clock",
    "Message",
    "Rejected",
    "Sender",
    "dead_letter_envelope",
    "decode_each",
]

log = logging.getLogger("personas.agents")

ModelT = TypeVar("ModelT", bound=BaseModel)
#: Seconds since the epoch; injected so that tests fix the time rows are stamped with.
Clock: TypeAlias = Callable[[], float]


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


Rejected: TypeAlias = tuple[Message, BaseException]


class Sender(Protocol):
    """Queues a message; the awaitable it returns resolves once the broker has the message."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


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
    """The DLQ value (SPEC §2): the original bytes plus reason, error, topic, partition, offset."""
    raw = message.value if isinstance(message.value, bytes) else b""
    envelope: dict[str, Any] = {
        "reason": str(error),
        "error": type(error).__name__,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "failed_at": failed_at,
    }
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

        Sent together and awaited once: one at a time, each waits out the producer's linger, which
        held a burst of bad input to ~200 dead letters a second. A transient error re-sends the
        lot; a dead letter is identified by its source topic/partition/offset, so a copy is
        harmless (delivery is at-least-once anyway: a crash before the commit re-sends it too).
        """
        if not rejected:
            return
        now = self.clock()
        letters = []
        for message, error in rejected:
            log.warning(
                "dead-lettered %s[%d] offset %d: %s",
                message.topic, message.partition, message.offset, error,
            )  # fmt: skip
            key = message.key if isinstance(message.key, bytes) else None
            letters.append((message.topic, key, dead_letter_envelope(message, error, now)))

        async def send() -> None:
            receipts = [
                await self.sender.send(dlq_name(source), key, value)
                for source, key, value in letters
            ]
            await asyncio.gather(*receipts)

        await self.retry("dead-letter", send)
        for source, _, _ in letters:
            self.metrics.dead_letters.labels(source).inc()
