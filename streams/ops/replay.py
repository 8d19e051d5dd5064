"""Move a consumer group's offsets on one topic, for backfills (SPEC §10).

Modelled on `kafka-consumer-groups --reset-offsets`: `plan_replay` computes, per partition, the
committed offset → the target and how many messages the group will read again (what
`personas replay --dry-run` prints); `execute_plan` commits the targets. A group whose committed
offset is missing counts as starting at the log start (the worker's `auto_offset_reset` is
`earliest`).

Targets (`parse_target`, `--to`): `earliest`, `latest`, a time (epoch seconds or ISO-8601, no
zone = UTC: the first message with a timestamp at or after it), `offset:N` (clamped into the
log), `shift:±N` (committed + N, negative to go back, clamped). Replays are idempotent
downstream: every write is an upsert.

Executing refuses while the group has live members (they would overwrite the new offsets with
their own commits), unless `force`. To know who is live, this joins the group — the only way
the embedded broker accepts a commit and forgets members that have left — and leaves at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from aiokafka import TopicPartition

from agents.core.errors import InvalidMessage, WalletError
from agents.core.records import parse_timestamp
from config.settings import Settings
from streams.ops.offsets import (
    LogRange,
    admin_client,
    committed_offsets,
    describe_group,
    joined_member,
    log_ranges,
    offset_for_time,
    reader,
    topic_partitions,
)

__all__ = [
    "Move",
    "ReplayPlan",
    "Target",
    "execute_plan",
    "parse_target",
    "plan_replay",
    "resolve_target",
]

TargetKind = Literal["earliest", "latest", "time", "offset", "shift"]


@dataclass(frozen=True)
class Target:
    """Where to move: `value` is epoch milliseconds (time), an offset, or a shift."""

    kind: TargetKind
    value: int = 0


def parse_target(text: str) -> Target:
    """Parse `--to`; bad input raises InvalidMessage naming `--to` (exit 2)."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("earliest", "latest"):
        return Target(lowered)  # type: ignore[arg-type]
    for kind in ("offset", "shift"):
        if lowered.startswith(kind + ":"):
            number = raw[len(kind) + 1 :].strip()
            try:
                value = int(number)
            except ValueError:
                raise InvalidMessage("--to", f"{kind}:N needs an integer (got {raw!r})") from None
            if kind == "offset" and value < 0:
                raise InvalidMessage("--to", f"offset:N must be ≥ 0 (got {raw!r})")
            return Target(kind, value)
    try:
        seconds = parse_timestamp(raw)
    except ValueError:
        raise InvalidMessage(
            "--to", f"expected earliest|latest|ISO-8601|epoch|offset:N|shift:±N (got {raw!r})"
        ) from None
    if seconds < 0:
        raise InvalidMessage("--to", f"a time must not be before 1970 (got {raw!r})")
    return Target("time", seconds * 1000)


def resolve_target(
    target: Target, span: LogRange, committed: int | None, time_offset: int | None = None
) -> int:
    """The offset a target means for one partition, always inside [start, end]."""
    current = span.start if committed is None else committed
    if target.kind == "earliest":
        wanted = span.start
    elif target.kind == "latest":
        wanted = span.end
    elif target.kind == "offset":
        wanted = target.value
    elif target.kind == "shift":
        wanted = current + target.value
    else:
        if time_offset is None:
            raise ValueError("a time target needs the offset found for that time")
        wanted = time_offset
    return min(max(wanted, span.start), span.end)


@dataclass(frozen=True)
class Move:
    """One partition's move; `reread` messages will be consumed again, `skipped` never."""

    partition: int
    log_start: int
    log_end: int
    committed: int | None
    target: int

    @property
    def current(self) -> int:
        return self.log_start if self.committed is None else self.committed

    @property
    def reread(self) -> int:
        return max(self.current - self.target, 0)

    @property
    def skipped(self) -> int:
        return max(self.target - self.current, 0)

    @property
    def lag_after(self) -> int:
        return self.log_end - self.target

    def as_dict(self) -> dict[str, int | None]:
        return {**asdict(self), "reread": self.reread, "skipped": self.skipped,
                "lag_after": self.lag_after}  # fmt: skip


@dataclass(frozen=True)
class ReplayPlan:
    group: str
    topic: str
    target: Target
    moves: tuple[Move, ...]
    group_state: str
    members_listed: int

    def as_dict(self) -> dict[str, object]:
        return {
            "group": self.group, "topic": self.topic, "to": asdict(self.target),
            "group_state": self.group_state, "members_listed": self.members_listed,
            "partitions": [move.as_dict() for move in self.moves],
            "reread": sum(move.reread for move in self.moves),
        }  # fmt: skip


async def plan_replay(
    bootstrap: str,
    settings: Settings,
    group: str,
    topic: str,
    target: Target,
    partitions: list[int] | None = None,
) -> ReplayPlan:
    """Read the group's committed offsets and the logs; compute each partition's target."""
    async with reader(bootstrap, settings) as consumer:
        tps = await topic_partitions(consumer, topic)
        if partitions:
            known = {tp.partition for tp in tps}
            unknown = sorted(set(partitions) - known)
            if unknown:
                raise InvalidMessage(
                    "--partition", f"{topic} has partitions {sorted(known)}, not {unknown}"
                )
            tps = [tp for tp in tps if tp.partition in set(partitions)]
        ranges = await log_ranges(consumer, tps)
        committed = await committed_offsets(bootstrap, settings, group, tps)
        moves = []
        for tp in tps:
            found = None
            if target.kind == "time":
                found = await offset_for_time(consumer, tp, target.value, ranges[tp])
            wanted = resolve_target(target, ranges[tp], committed[tp], found)
            span = ranges[tp]
            moves.append(Move(tp.partition, span.start, span.end, committed[tp], wanted))
    async with admin_client(bootstrap, settings) as admin:
        info = await describe_group(admin, group)
    return ReplayPlan(group, topic, target, tuple(moves), info.state, len(info.members))


async def execute_plan(
    bootstrap: str, settings: Settings, plan: ReplayPlan, *, force: bool = False
) -> list[int]:
    """Commit the plan's targets as the group; return the partitions moved.

    Raises WalletError (exit 1) while other members are live, unless `force`.
    """
    async with joined_member(bootstrap, settings, plan.group, [plan.topic]) as member:
        if member.others and not force:
            raise WalletError(
                f"group {plan.group} has {len(member.others)} live member(s): stop its consumers "
                "(e.g. the worker) first, or pass --force to move the offsets anyway"
            )
        assigned = member.consumer.assignment()
        offsets = {
            tp: move.target
            for move in plan.moves
            if (tp := TopicPartition(plan.topic, move.partition)) in assigned
        }
        if offsets:
            await member.consumer.commit(offsets)
        moved = sorted(tp.partition for tp in offsets)
    missing = sorted({move.partition for move in plan.moves} - set(moved))
    if missing:
        raise WalletError(
            f"partitions {missing} of {plan.topic} are held by live members of {plan.group} and "
            f"were not moved (moved: {moved})"
        )
    return moved
