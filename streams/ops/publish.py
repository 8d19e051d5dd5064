"""`personas publish`: produce discovery or trade events, all validated before the first send.

    personas publish discovered 0xabc… 0xdef…         wallets on the command line
    personas publish discovered --file wallets.jsonl  proxy_wallet[, discovered_at, source]
    personas publish trades --file trades.jsonl       trades (SPEC §1), JSONL or CSV

Every line is validated first; if any is bad, the bad lines are reported (line number, field,
reason), nothing is sent and the exit status is 2: a file is published whole or not at all.
Then the events are sent keyed by wallet (optionally at most `--rate` per second), with
progress on stderr and a summary (sent, rejected, msg/s). Files are read twice, not held in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from agents.core.codec import dumps, invalid_from
from agents.core.errors import InvalidMessage
from agents.core.records import Trade, Wallet, WalletDiscovered, parse_timestamp
from agents.data.importer import RowError, read_records
from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.ops.offsets import quiet_clients
from streams.producer import publisher
from streams.progress import Progress
from streams.topics import ensure_topics

__all__ = ["DiscoveryLine", "PublishReport", "command_publish", "publish_file", "validate_file"]

SHOWN_ERRORS = 20


def _optional_time(value: Any) -> int | None:
    """Blank → None (stamped at publish time); otherwise epoch seconds ≥ 0 or ISO-8601 UTC."""
    if value is None or value == "":
        return None
    seconds = parse_timestamp(value)
    if seconds < 0:
        raise ValueError("must not be before 1970")
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


def validate_file(path: Path, kind: str) -> tuple[int, list[RowError]]:
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
    source: str = "cli", rate: float | None = None, progress: bool = True,
) -> PublishReport:  # fmt: skip
    """Validate `path` whole, then send it; nothing is sent when a line is bad."""
    topic = settings.topics.trades if kind == "trades" else settings.topics.discovered
    report = PublishReport(topic)
    report.read, errors = validate_file(path, kind)
    report.errors = [str(error) for error in errors]
    report.rejected = len(errors)
    if errors or report.read == 0:
        return report
    await ensure_topics(bootstrap, settings)
    bar = Progress("publishing", report.read, enabled=progress)
    async with publisher(bootstrap, settings) as pub:
        events = _events(path, kind, int(time.time()), source)
        report.sent = await pub.send_many(topic, events, rate=rate, on_progress=bar.update)
    report.seconds = bar.finish(report.sent)
    return report


async def _publish_wallets(
    bootstrap: str, settings: Settings, events: list[WalletDiscovered], rate: float | None
) -> PublishReport:
    report = PublishReport(settings.topics.discovered, read=len(events))
    await ensure_topics(bootstrap, settings)
    started = time.monotonic()
    async with publisher(bootstrap, settings) as pub:
        report.sent = await pub.send_many(report.topic, events, rate=rate)
    report.seconds = time.monotonic() - started
    return report


def _wallet_events(wallets: list[str], source: str) -> tuple[list[WalletDiscovered], list[str]]:
    now, events, errors = int(time.time()), [], []
    for number, wallet in enumerate(wallets, 1):
        try:
            events.append(DiscoveryLine.model_validate({"proxy_wallet": wallet}).event(now, source))
        except ValidationError as exc:
            error = invalid_from(exc)
            errors.append(f"WALLET {number}: {error.field}: {error.reason}")
    return events, errors


def command_publish(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    if args.rate is not None and args.rate <= 0:
        raise InvalidMessage("--rate", f"must be a positive messages per second (got {args.rate})")
    if args.kind == "trades" and (args.wallets or args.file is None):
        raise InvalidMessage("publish trades", "takes --file F (JSONL or CSV), no wallets")
    if args.kind == "discovered" and bool(args.wallets) == (args.file is not None):
        raise InvalidMessage("publish discovered", "give wallets or --file F, not both or neither")
    if args.file is not None and not args.file.is_file():
        raise InvalidMessage("--file", f"no such file: {args.file}")

    events: list[WalletDiscovered] = []
    if args.wallets:
        events, errors = _wallet_events(args.wallets, args.source)
        if errors:
            report = PublishReport(settings.topics.discovered, read=len(args.wallets),
                                   rejected=len(errors), errors=errors)  # fmt: skip
            return _finish(args, report, None)
    with broker_for(settings, start_embedded=False) as bootstrap:
        if args.file is not None:
            report = asyncio.run(publish_file(
                bootstrap, settings, args.file, args.kind, source=args.source, rate=args.rate,
                progress=not args.json,
            ))  # fmt: skip
        else:
            report = asyncio.run(_publish_wallets(bootstrap, settings, events, args.rate))
    return _finish(args, report, args.file)


def _finish(args: argparse.Namespace, report: PublishReport, path: Path | None) -> int:
    status = 2 if report.rejected or report.read == 0 else 0
    if args.json:
        sys.stdout.buffer.write(dumps({**report.as_dict(), "ok": status == 0}) + b"\n")
        return status
    prefix = f"{path}:" if path is not None else ""
    for error in report.errors[:SHOWN_ERRORS]:
        print(f"{prefix}{error}", file=sys.stderr)
    if report.rejected > SHOWN_ERRORS:
        print(f"… and {report.rejected - SHOWN_ERRORS:,} more", file=sys.stderr)
    if report.rejected:
        print(f"nothing sent: {report.rejected:,} of {report.read:,} rejected; fix them and "
              "publish again", file=sys.stderr)  # fmt: skip
    elif report.read == 0:
        print(f"nothing sent: {path} has no events", file=sys.stderr)
    else:
        print(f"{report.topic}: {report.sent:,} sent, {report.rejected} rejected in "
              f"{report.seconds:.2f}s ({report.rate:,.0f} msg/s)")  # fmt: skip
    return status
