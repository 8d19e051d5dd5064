"""`personas replay --group G --topic T --to WHERE [--partition P]… [--dry-run] [--force]`.

Prints (or, with `--json`, emits) the plan of `streams.ops.replay.plan_replay`: per partition the
committed offset → the target, the messages to re-read, skipped and left; without `--dry-run`
the targets are committed (`execute_plan`), which refuses while the group has live members.
"""

from __future__ import annotations

import argparse
import asyncio

from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, print_table
from streams.cli.status import EXIT_OK
from streams.ops.offsets import quiet_clients
from streams.ops.replay import ReplayPlan, Target, execute_plan, parse_target, plan_replay

__all__ = ["command_replay"]


async def _replay(
    bootstrap: str, settings: Settings, args: argparse.Namespace, target: Target
) -> ReplayPlan:
    plan = await plan_replay(bootstrap, settings, args.group, args.topic, target, args.partition)
    if not args.dry_run:
        await execute_plan(bootstrap, settings, plan, force=args.force)
    return plan


def command_replay(args: argparse.Namespace) -> int:
    """Plan the move, commit it unless `--dry-run`, print the plan."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    target = parse_target(args.to)
    with broker_for(settings, start_embedded=False) as bootstrap:
        plan = asyncio.run(_replay(bootstrap, settings, args, target))
    if args.json:
        emit_json({**plan.as_dict(), "dry_run": args.dry_run})
    else:
        _print_plan(plan, args.dry_run)
    return EXIT_OK


def _target_text(target: Target) -> str:
    if target.kind in ("earliest", "latest"):
        return target.kind
    if target.kind == "time":
        return f"time {target.value // 1000}"
    return f"{target.kind}:{target.value}"


def _print_plan(plan: ReplayPlan, dry_run: bool) -> None:
    print(f"group {plan.group}  topic {plan.topic}  to {_target_text(plan.target)}  "
          f"(group state {plan.group_state}, {plan.members_listed} member(s) listed)")  # fmt: skip
    print_table(
        ("PARTITION", "COMMITTED", "", "TARGET", "RE-READ", "SKIPPED", "LAG AFTER"),
        (
            (move.partition, "-" if move.committed is None else move.committed, "→",
             move.target, move.reread, move.skipped, move.lag_after)
            for move in plan.moves
        ),
    )  # fmt: skip
    total = sum(move.reread for move in plan.moves)
    verb = "would move" if dry_run else "moved"
    print(f"{verb} {len(plan.moves)} partition(s); {total:,} message(s) to re-read"
          + ("  (dry run: nothing changed)" if dry_run else ""))  # fmt: skip
