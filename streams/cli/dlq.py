"""`personas dlq list|redrive [--topic T] [--reason R]`: dead letters by reason, or re-driven.

The Python API and the at-least-once/idempotence rules are in `streams.ops.dlq`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from config.settings import load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json
from streams.cli.status import EXIT_OK
from streams.ops.dlq import ReasonGroup, RedriveReport, list_dead_letters, redrive
from streams.ops.offsets import quiet_clients

__all__ = ["command_dlq"]


def command_dlq(args: argparse.Namespace) -> int:
    """`list`: count dead letters by reason; `redrive`: send them back to their source topic."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    with broker_for(settings, start_embedded=False) as bootstrap:
        if args.action == "list":
            listing = list_dead_letters(bootstrap, settings, args.topic, args.reason)
            groups, total = asyncio.run(listing)
            if args.json:
                emit_json({"total": total, "groups": [group.as_dict() for group in groups]})
            else:
                _print_listing(groups, total)
        else:
            report = asyncio.run(redrive(bootstrap, settings, args.topic, args.reason))
            if args.json:
                emit_json(report.as_dict())
            else:
                _print_redrive(report)
    return EXIT_OK


def _print_listing(groups: Sequence[ReasonGroup], total: int) -> None:
    if not groups:
        print("no dead letters")
        return
    for group in groups:
        offsets = ", ".join(map(str, group.sample_offsets))
        more = ", …" if group.count > len(group.sample_offsets) else ""
        print(f"{group.topic}  {group.count:>6}  {group.error:<18} {group.reason}"
              f"  (offsets {offsets}{more})")  # fmt: skip
    print(f"{total:,} dead letter(s)")


def _print_redrive(report: RedriveReport) -> None:
    for target, count in sorted(report.sent.items()):
        print(f"re-drove {count:,} message(s) to {target}")
    if not report.sent:
        print("nothing to re-drive")
    if report.left:
        print(f"{report.left:,} dead letter(s) left in place (filtered out or unreadable)")
