"""Produce discovery or trade events, all validated before the first send (SPEC §10).

    publish_file(bootstrap, settings, path, "discovered")   proxy_wallet[, discovered_at, source]
    publish_file(bootstrap, settings, path, "trades")       trades (SPEC §1), JSONL or CSV
    publish_wallets(bootstrap, settings, discovery_events(wallets, "cli")[0])

Every line of a file is validated first; if any is bad, the report lists the bad lines (line
number, field, reason) and nothing is sent: a file is published whole or not at all. Then the
events are sent keyed by wallet (optionally at most `rate` per second). Files are read twice,
not held in memory. `personas publish` (`streams.cli.publish`) is the command line over these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agents.core.codec import invalid_from
from agents.core.errors import InvalidMessage
from agents.core.records import Trade, Wallet, WalletDiscovered, check_not_future, parse_timestamp
from agents.data.importer import RowError, read_records
from config.settings import Settings
from streams.producer import publisher
from streams.topics import ensure_topics

__all__ = ["PublishReport", "discovery_events", "publish_file", "publish_wallets"]


def _optional_time(value: Any) -> int | None:
    """Blank → None (stamped at publish time); otherwise epoch seconds ≥ 0 or ISO-8601 UTC."""
    if value is None or value == "":
        return None
    seconds = parse_timestamp(value)
    if seconds < 0:
        raise ValueError("must not be before 1970")
    try:
        check_not_future("discovered_at", seconds, time.time())
    except InvalidMessage as exc:  # the agent would dead-letter it: refuse it before sending
        raise ValueError(exc.reason) from None
    return seconds


class DiscoveryLine(BaseModel):
    """A line of a discoveries file: only the wallet is required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy_wallet: Wallet
    discovered_at: Annotated[int | None, BeforeValidator(_optional_time)] = None
    source: str | None = Field(default=None, max_length=200)

    def event(self, now: int, source: str) -> WalletDiscovered:
        return WalletDiscovered.model_validate({
            "proxy_wallet": self.proxy_wallet,
            "discovered_at": self.discovered_at if self.discovered_at is not None else now,
            "source": self.source or source,
        })  # fmt: skip


@dataclass
class PublishReport:
    """What one publish did."""

    topic: str
    read: int = 0
    sent: int = 0
    rejected: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "read": self.read, "sent": self.sent,
                "rejected": self.rejected, "seconds": round(self.seconds, 3),
                "msg_per_s": round(self.rate, 1), "errors": self.errors[:100]}  # fmt: skip


def _model(kind: str) -> type[Trade] | type[DiscoveryLine]:
    return Trade if kind == "trades" else DiscoveryLine


def _validate_file(path: Path, kind: str) -> tuple[int, list[RowError]]:
    """Validate every line of `path`; return (data lines, errors)."""
    errors: list[RowError] = []
    lines = sum(1 for _ in read_records(path, _model(kind), errors))
    return lines, errors


def _events(path: Path, kind: str, now: int, source: str) -> Iterator[Trade | WalletDiscovered]:
    errors: list[RowError] = []
    for _, record in read_records(path, _model(kind), errors):
        if record is None:  # the file changed since it was validated: stop, do not half-send
            raise InvalidMessage("FILE", f"{path} changed while publishing: {errors[-1]}")
        yield record.event(now, source) if isinstance(record, DiscoveryLine) else record


async def publish_file(
    bootstrap: str, settings: Settings, path: Path, kind: str, *,
    source: str = "cli", rate: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> PublishReport:  # fmt: skip
    """Validate `path` whole, then send it; nothing is sent when a line is bad.

    `on_progress(sent, total)` is called as sends complete.
    """
    topic = settings.topics.trades if kind == "trades" else settings.topics.discovered
    report = PublishReport(topic)
    # Reading the whole file would block the event loop of a caller that runs other tasks.
    report.read, errors = await asyncio.to_thread(_validate_file, path, kind)
    report.errors = [str(error) for error in errors]
    report.rejected = len(errors)
    if errors or report.read == 0:
        return report
    await ensure_topics(bootstrap, settings)
    total = report.read
    progress = None if on_progress is None else (lambda sent: on_progress(sent, total))
    started = time.monotonic()
    async with publisher(bootstrap, settings) as pub:
        events = _events(path, kind, int(time.time()), source)
        report.sent = await pub.send_many(topic, events, rate=rate, on_progress=progress)
    report.seconds = time.monotonic() - started
    return report


async def publish_wallets(
    bootstrap: str, settings: Settings, events: list[WalletDiscovered], rate: float | None = None
) -> PublishReport:
    """Send already validated discoveries (see `discovery_events`)."""
    report = PublishReport(settings.topics.discovered, read=len(events))
    await ensure_topics(bootstrap, settings)
    started = time.monotonic()
    async with publisher(bootstrap, settings) as pub:
        report.sent = await pub.send_many(report.topic, events, rate=rate)
    report.seconds = time.monotonic() - started
    return report


def discovery_events(wallets: list[str], source: str) -> tuple[list[WalletDiscovered], list[str]]:
    """Discoveries of `wallets`, stamped now, and an error per bad one (`WALLET n: field: why`)."""
    now, events, errors = int(time.time()), [], []
    for number, wallet in enumerate(wallets, 1):
        try:
            events.append(DiscoveryLine.model_validate({"proxy_wallet": wallet}).event(now, source))
        except ValidationError as exc:
            error = invalid_from(exc)
            errors.append(f"WALLET {number}: {error.field}: {error.reason}")
    return events, errors
