"""Dead letters decoded, and gathered by the source message they are letters of.

A dead letter (`agents.context.dead_letter_envelope`) is JSON with the reason, the error class,
the source topic/partition/offset, the time, and the original bytes (`value`, or `value_base64`
when they were not UTF-8); its key is the original key. The letter of a re-driven copy that
failed again names the same source message and adds `redrives`, the times it was re-driven.

One source message may have several letters. Dead-lettering is at-least-once (a worker killed
between the DLQ send and its commit sends a letter again: a *copy*, same source and re-drive
count), and each re-drive of a still-bad message adds a letter one re-drive later, which
*supersedes* the one before. `History` gathers a source message's letters; `streams.ops.dlq`
lists, shows and re-drives by source message.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from agents.context import Address
from agents.core.codec import loads
from agents.core.errors import InvalidMessage

__all__ = ["UNREADABLE", "DeadLetter", "History", "gather_histories", "preview"]

PREVIEW_CHARS = 48
#: The error class of a letter that is not a dead-letter envelope.
UNREADABLE = "UnreadableEnvelope"


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


def gather_histories(letters: Iterable[DeadLetter]) -> list[History]:
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
