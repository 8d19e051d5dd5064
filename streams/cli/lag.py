"""`personas lag [--group G]… [--watch [S]]`: print `streams.ops.lag.collect_lag`.

One table per group (committed offset, log end, lag in messages and seconds, status per
partition); `--watch` samples again every S seconds, judging STALL and growth against the last
sample, until Ctrl-C. On a terminal each sample replaces the last one on screen; piped, the
tables follow one another, each under the time it was sampled. With `--json`, one JSON object
per sample per line. The exit status is 0 whatever the lag, Ctrl-C included (it is how
`--watch` ends): the status column says it. A `--group` unknown to the broker and none of ours
is bad usage (exit 2), naming our groups.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from config.settings import load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, print_table
from streams.cli.status import EXIT_OK
from streams.ops.lag import GroupLag, collect_lag
from streams.ops.offsets import quiet_clients

__all__ = ["command_lag", "watch"]

MIN_WATCH_S = 0.5  # a sample reads every partition: more often only loads the broker

# Cursor home, then erase the screen: the next sample is drawn where the last one was.
REDRAW = "\x1b[H\x1b[2J"

#: One sample of every group, judged against the previous one (by group).
Sample = Callable[[Mapping[str, GroupLag]], list[GroupLag]]


def command_lag(args: argparse.Namespace) -> int:
    """Print the lag once, or every `--watch` seconds until interrupted."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    with broker_for(settings, start_embedded=False) as bootstrap:

        def sample(previous: Mapping[str, GroupLag]) -> list[GroupLag]:
            return asyncio.run(collect_lag(bootstrap, settings, args.group, previous))

        if args.watch is None:
            _show(sample({}), as_json=args.json)
            return EXIT_OK
        return watch(sample, args.watch, as_json=args.json, redraw=sys.stdout.isatty())


def watch(
    sample: Sample,
    interval: float,
    *,
    as_json: bool,
    redraw: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sample every `interval` s (at least `MIN_WATCH_S`) and show each, until Ctrl-C; then 0.

    `redraw`: clear the screen before each table (a terminal); else tables follow each other.
    """
    every = max(interval, MIN_WATCH_S)
    previous: dict[str, GroupLag] = {}
    first = True
    try:
        while True:
            groups = sample(previous)
            if as_json:
                _show(groups, as_json=True)
            else:
                if redraw:
                    sys.stdout.write(REDRAW)
                elif not first:
                    print()
                print(f"{_sampled_at(groups)}  every {every:g}s, Ctrl-C to stop")
                _show(groups, as_json=False)
                sys.stdout.flush()
            first = False
            previous = {group.group: group for group in groups}
            sleep(every)
    except KeyboardInterrupt:  # the normal end of a watch, not a failure
        return EXIT_OK


def _sampled_at(groups: Sequence[GroupLag]) -> str:
    at = groups[0].sampled_at if groups else time.time()
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _show(groups: Sequence[GroupLag], *, as_json: bool) -> None:
    if as_json:
        emit_json({"groups": [group.as_dict() for group in groups]})
        return
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
