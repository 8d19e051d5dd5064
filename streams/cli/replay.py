"""`personas replay --group G --topic T --to WHERE [--partition P]… [--dry-run]
[--allow-new-group]`.

Says on stderr, as it goes, what it checks (the group and topic, then live members: up to a
session timeout when a member is listed). Then prints (or, with `--json`, emits) the plan of
`streams.ops.replay.plan_replay`: per partition the committed offset → the target, the messages
to re-read, skipped and left. Without `--dry-run` the targets are committed (`execute_plan`);
with it, the plan ends with whether the real run would be refused and why, and the exit status
is the one the real run would have. `--force` is hidden and changes nothing: a group with live
members is never moved, and a note says so when it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from config.settings import Settings, load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, print_table
from streams.cli.status import EXIT_OK
from streams.ops.offsets import quiet_clients
from streams.ops.replay import ReplayPlan, Target, execute_plan, parse_target, plan_replay

__all__ = ["command_replay"]

FORCE_NOTE = "note: --force changes nothing: a group with live members is never moved"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _replay(
    bootstrap: str, settings: Settings, args: argparse.Namespace, target: Target
) -> tuple[ReplayPlan, list[int]]:
    plan = await plan_replay(
        bootstrap, settings, args.group, args.topic, target, args.partition,
        allow_new_group=args.allow_new_group, force=args.force, dry_run=args.dry_run, say=_say,
    )  # fmt: skip
    moved = [] if args.dry_run else await execute_plan(bootstrap, settings, plan)
    return plan, moved


def command_replay(args: argparse.Namespace) -> int:
    """Check, plan the move, commit it unless `--dry-run`, print the plan."""
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    target = parse_target(args.to)
    if args.force:
        _say(FORCE_NOTE)
    with broker_for(settings, start_embedded=False) as bootstrap:
        plan, moved = asyncio.run(_replay(bootstrap, settings, args, target))
    if args.json:
        extra = {} if args.dry_run else {"moved": moved}
        emit_json({**plan.as_dict(), "dry_run": args.dry_run, **extra})
    else:
        _print_plan(plan, args.dry_run)
    refusal = plan.refusal
    return refusal.exit_code if refusal is not None else EXIT_OK


def _target_text(target: Target) -> str:
    if target.kind in ("earliest", "latest"):
        return target.kind
    if target.kind == "time":
        return f"time {target.value // 1000}"
    return f"{target.kind}:{target.value}"


def _print_plan(plan: ReplayPlan, dry_run: bool) -> None:
    live = f"{plan.members_live} live member(s)" if plan.members_live else "no live member"
    print(f"group {plan.group}  topic {plan.topic}  to {_target_text(plan.target)}  "
          f"(group state {plan.group_state}, {live})")  # fmt: skip
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
    if not dry_run:
        return
    if not plan.refusals:
        print("the real run would go ahead")
    for refusal in plan.refusals:
        print(f"the real run would be refused (exit {refusal.exit_code}): {refusal.message}")
