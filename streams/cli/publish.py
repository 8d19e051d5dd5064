"""`personas publish discovered WALLET… | --file F` and `personas publish trades --file F`.

Every event is validated before the first send: bad lines are reported (line number, field,
reason), nothing is sent and the exit status is 2. Progress goes to stderr, the summary
(sent, rejected, msg/s) to stdout. The Python API is `streams.ops.publish`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agents.core.errors import InvalidMessage
from agents.core.records import WalletDiscovered
from config.settings import load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, input_file
from streams.cli.status import EXIT_OK, EXIT_USAGE
from streams.ops.offsets import quiet_clients
from streams.ops.publish import PublishReport, discovery_events, publish_file, publish_wallets
from streams.progress import Progress

__all__ = ["command_publish"]

SHOWN_ERRORS = 20


def _check_usage(args: argparse.Namespace) -> None:
    if args.rate is not None and args.rate <= 0:
        raise InvalidMessage("--rate", f"must be a positive messages per second (got {args.rate})")
    if args.kind == "trades" and (args.wallets or args.file is None):
        raise InvalidMessage("publish trades", "takes --file F (JSONL or CSV), no wallets")
    if args.kind == "discovered" and bool(args.wallets) == (args.file is not None):
        raise InvalidMessage("publish discovered", "give wallets or --file F, not both or neither")
    if args.file is not None:
        input_file(args.file, "--file")


def command_publish(args: argparse.Namespace) -> int:
    """Validate, then send; exit 2 (nothing sent) when any event is bad or there is none."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    _check_usage(args)
    events: list[WalletDiscovered] = []
    if args.wallets:
        events, errors = discovery_events(args.wallets, args.source)
        if errors:
            report = PublishReport(settings.topics.discovered, read=len(args.wallets),
                                   rejected=len(errors), errors=errors)  # fmt: skip
            return _finish(args, report, None)
    with broker_for(settings, start_embedded=False) as bootstrap:
        if args.file is None:
            report = asyncio.run(publish_wallets(bootstrap, settings, events, args.rate))
        else:
            bar = Progress("publishing", 0, enabled=not args.json)

            def progress(sent: int, total: int) -> None:
                bar.total = total
                bar.update(sent)

            report = asyncio.run(publish_file(
                bootstrap, settings, args.file, args.kind, source=args.source, rate=args.rate,
                on_progress=progress,
            ))  # fmt: skip
            if report.sent:
                bar.total = report.read
                bar.finish(report.sent)
    return _finish(args, report, args.file)


def _finish(args: argparse.Namespace, report: PublishReport, path: Path | None) -> int:
    status = EXIT_USAGE if report.rejected or report.read == 0 else EXIT_OK
    if args.json:
        emit_json({**report.as_dict(), "ok": status == EXIT_OK})
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
