"""`personas lag [--group G]… [--watch [S]]`: print `streams.ops.lag.collect_lag`.

One table per group (committed offset, log end, lag in messages and seconds, status per
partition); `--watch` samples again every S seconds, judging STALL and growth against the last
sample, until Ctrl-C. The exit status is 0 whatever the lag: the status column says it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from config.settings import load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, print_table
from streams.cli.status import EXIT_OK
from streams.ops.lag import GroupLag, collect_lag
from streams.ops.offsets import quiet_clients

__all__ = ["command_lag"]

MIN_WATCH_S = 0.5  # a sample reads every partition: more often only loads the broker


def command_lag(args: argparse.Namespace) -> int:
    """Print the lag once, or every `--watch` seconds until interrupted."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    with broker_for(settings, start_embedded=False) as bootstrap:
        previous: dict[str, GroupLag] = {}
        while True:
            groups = asyncio.run(collect_lag(bootstrap, settings, args.group, previous))
            if args.json:
                emit_json({"groups": [group.as_dict() for group in groups]})
            else:
                _print(groups)
            if args.watch is None:
                return EXIT_OK
            previous = {group.group: group for group in groups}
            if not args.json:
                print(flush=True)
            time.sleep(max(args.watch, MIN_WATCH_S))


def _print(groups: Sequence[GroupLag]) -> None:
    for group in groups:
        print(f"GROUP {group.group}  status {group.status}  state {group.state}  "
              f"members {group.members}  lag {group.lag_messages:,} msgs / "
              f"{group.lag_seconds:,.1f}s")  # fmt: skip
        if not group.partitions:
            print("  (no committed offsets)")
            continue
        print_table(
            ("TOPIC", "PART", "COMMITTED", "END", "LAG", "LAG_S", "STATUS"),
            (
                (p.topic, p.partition, "-" if p.committed is None else p.committed, p.log_end,
                 p.lag_messages, f"{p.lag_seconds:.1f}", p.status)
                for p in group.partitions
            ),
            left=("TOPIC", "STATUS"),
        )  # fmt: skip
