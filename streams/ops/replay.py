"""Move a consumer group's offsets on one topic, for backfills (SPEC §10).

Modelled on `kafka-consumer-groups --reset-offsets`: `plan_replay` checks that the move may be
made and computes, per partition, the committed offset → the target and how many messages the
group will read again (what `personas replay --dry-run` prints); `execute_plan` commits the
targets. A group whose committed offset is missing counts as starting at the log start (the
worker's `auto_offset_reset` is `earliest`).

Targets (`parse_target`, `--to`): `earliest`, `latest`, a time (epoch seconds or ISO-8601, no
zone = UTC: the first message at or after it), `offset:N` (clamped into the log), `shift:±N`
(committed + N, negative to go back, clamped). Replays are idempotent downstream: every write is
an upsert.

A replay is refused (`Refusal`), in this order:

    unknown-group   (exit 2) the group is none of ours (`readers`), is not on the broker, and
                    has no offsets on the topic: usually a typo, which would otherwise leave a
                    group that nobody reads and that `personas lag` reports for ever
    topic-not-read  (exit 2) the group exists but neither reads the topic nor has offsets on it
    live-members    (exit 1) the group has live members: their next commit would undo the move,
                    and a broker takes a group's commits only from the members holding its
                    partitions, so any move made now could only be partial

The first two are lifted by `allow_new_group`. Nothing lifts the third (`force` no longer does:
it half-moved the topic); with `force` the refusal says so. Live members are found from a
describe of the group, never by joining it (`streams.ops.offsets.live_members`), so checking
does not make a running worker rebalance; the commit is made from outside the group, which the
broker refuses, for every partition, if a member has joined since the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from aiokafka import TopicPartition

from agents.core.errors import InvalidMessage, WalletError
from agents.core.records import parse_timestamp
from config.settings import Settings
from streams.ops.dlq import redrive_group
from streams.ops.offsets import (
    GroupInfo,
    LogRange,
    admin_client,
    commit_outside,
    committed_offsets,
    list_groups,
    live_members,
    log_ranges,
    offset_for_time,
    reader,
)
from streams.topics import STAGES, dlq_name, stage_group

__all__ = [
    "Move",
    "Refusal",
    "ReplayPlan",
    "Target",
    "execute_plan",
    "members_refusal",
    "parse_target",
    "plan_replay",
    "readers",
    "resolve_target",
    "target_refusal",
]

TargetKind = Literal["earliest", "latest", "time", "offset", "shift"]
Reason = Literal["unknown-group", "topic-not-read", "live-members"]
Say = Callable[[str], None]

ALLOW_NEW = "a new consumer group, or one to start on this topic: pass --allow-new-group"


def _quiet(_: str) -> None:
    return None


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


def readers(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The project's consumer groups and the topics each reads: the worker's agents first."""
    by_stage = {
        "ingest": settings.topics.trades,
        "features": settings.topics.discovered,
        "classifier": settings.topics.features,
    }
    groups: dict[str, tuple[str, ...]] = {
        stage_group(settings.worker.app_id, stage): (by_stage[stage],) for stage in STAGES
    }
    groups[redrive_group(settings)] = tuple(
        dlq_name(topic) for topic in settings.topics.partitions()
    )
    return groups


@dataclass(frozen=True)
class Refusal:
    """Why a replay is not made; `exit_code` is the command's (see the module docstring)."""

    reason: Reason
    message: str

    @property
    def option(self) -> str:
        return {"unknown-group": "--group", "topic-not-read": "--topic"}.get(self.reason, "")

    @property
    def exit_code(self) -> int:
        return 1 if self.reason == "live-members" else 2

    def error(self) -> WalletError:
        if self.option:
            return InvalidMessage(self.option, self.message)
        return WalletError(self.message)

    def as_dict(self) -> dict[str, object]:
        return {"reason": self.reason, "message": self.message, "exit": self.exit_code}


def _read_by(topic: str, groups: Mapping[str, Sequence[str]], holders: Sequence[str]) -> str:
    names = sorted({*(g for g, topics in groups.items() if topic in topics), *holders})
    return f"{topic} is read by {', '.join(names)}" if names else f"no group reads {topic}"


def _our_groups(groups: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{group} ({', '.join(topics)})" for group, topics in groups.items())


def target_refusal(
    group: str,
    topic: str,
    groups: Mapping[str, Sequence[str]],
    *,
    has_offsets: bool,
    listed: bool,
    holders: Sequence[str] = (),
    allow_new_group: bool = False,
) -> Refusal | None:
    """Whether `group` may be moved on `topic`: it reads it (`groups`), or has offsets on it.

    `listed`: the broker knows the group; `holders`: other groups with offsets on the topic,
    named in the refusal with the readers. The refusal's lines after the first say what is known.
    """
    if allow_new_group or has_offsets or topic in groups.get(group, ()):
        return None
    if group in groups:
        reason: Reason = "topic-not-read"
        first = f"{group} reads {', '.join(groups[group])}, not {topic} (and has no offsets on it)"
    elif listed:
        reason = "topic-not-read"
        first = f"group {group} has no offsets on {topic}, and none of our consumers uses it"
    else:
        reason = "unknown-group"
        first = f"unknown group {group!r}: none of ours, not on the broker, no offsets on {topic}"
    lines = [first, _read_by(topic, groups, holders), f"our groups: {_our_groups(groups)}"]
    return Refusal(reason, "\n  ".join([*lines, ALLOW_NEW]))


def members_refusal(
    group: str, live: int, checked_s: float, *, force: bool = False
) -> Refusal | None:
    """Refuse while `live` members are left after `checked_s` of session checks, even `force`."""
    if not live:
        return None
    lines = [
        f"group {group} has {_plural(live, 'live member')}, still listed after {checked_s:.0f}s "
        "of session checks: nothing was moved",
        "stop its consumers (the worker: Ctrl-C or SIGTERM to `personas run`), then replay",
    ]
    if force:
        lines.append(
            "--force does not change this: the broker takes this group's commits only from its "
            "members, so a forced move could only move the partitions none of them holds"
        )
    why = "\n  ".join(lines)
    return Refusal("live-members", why)


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
    members_live: int = 0
    refusals: tuple[Refusal, ...] = ()

    @property
    def refusal(self) -> Refusal | None:
        """What the real run is refused for (the first reason), None when it may go ahead."""
        return self.refusals[0] if self.refusals else None

    def as_dict(self) -> dict[str, object]:
        return {
            "group": self.group, "topic": self.topic, "to": asdict(self.target),
            "group_state": self.group_state, "members_listed": self.members_listed,
            "members_live": self.members_live,
            "partitions": [move.as_dict() for move in self.moves],
            "reread": sum(move.reread for move in self.moves),
            "refused": self.refusal.as_dict() if self.refusal else None,
            "refusals": [refusal.as_dict() for refusal in self.refusals],
        }  # fmt: skip


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


async def _offset_holders(
    bootstrap: str, settings: Settings, groups: Sequence[str], tps: Sequence[TopicPartition]
) -> list[str]:
    """The groups among `groups` with a committed offset on one of `tps`."""
    found = []
    for name in groups:
        committed = await committed_offsets(bootstrap, settings, name, tps)
        if any(offset is not None for offset in committed.values()):
            found.append(name)
    return found


async def plan_replay(
    bootstrap: str,
    settings: Settings,
    group: str,
    topic: str,
    target: Target,
    partitions: list[int] | None = None,
    *,
    allow_new_group: bool = False,
    force: bool = False,
    dry_run: bool = False,
    say: Say = _quiet,
) -> ReplayPlan:
    """Check the replay may be made, then compute each partition's target. Never joins the group.

    A refusal is raised (`Refusal.error()`) as soon as it is known, before the slower checks;
    with `dry_run` every check runs and the plan carries the refusals. `say` is told each check.
    """
    known = readers(settings)
    say(f"checking group {group} and topic {topic} on the broker at {bootstrap}")
    async with reader(bootstrap, settings) as consumer, admin_client(bootstrap, settings) as admin:
        existing = await consumer.topics()
        if topic not in existing:
            ours = sorted({topic for topics in known.values() for topic in topics})
            raise InvalidMessage(
                "--topic", f"no topic {topic!r} on the broker; ours: {', '.join(ours)}"
            )
        numbers = sorted(consumer.partitions_for_topic(topic) or ())
        everyone = [TopicPartition(topic, p) for p in numbers]
        tps = everyone
        if partitions:
            unknown = sorted(set(partitions) - set(numbers))
            if unknown:
                raise InvalidMessage(
                    "--partition", f"{topic} has partitions {numbers}, not {unknown}"
                )
            tps = [tp for tp in everyone if tp.partition in set(partitions)]
        committed = await committed_offsets(bootstrap, settings, group, everyone)
        has_offsets = any(offset is not None for offset in committed.values())
        listed = await list_groups(admin)
        reads = topic in known.get(group, ())
        holders: list[str] = []
        if not (allow_new_group or has_offsets or reads):  # refused: name who reads the topic
            others = [name for name in listed if name != group]
            holders = await _offset_holders(bootstrap, settings, others, everyone)
        refusals: list[Refusal] = []
        refusal = target_refusal(
            group, topic, known, has_offsets=has_offsets, listed=group in listed,
            holders=holders, allow_new_group=allow_new_group,
        )  # fmt: skip
        if refusal is not None:
            if not dry_run:
                raise refusal.error()
            refusals.append(refusal)
            say(f"  refused: {refusal.reason}")
        elif reads:
            say(f"  {group} reads {topic}")
        elif has_offsets:
            say(f"  {group} has offsets on {topic}")
        else:
            say(f"  {group} is new to {topic} (--allow-new-group)")

        session_s = settings.broker.session_timeout_s
        say(f"checking for live members of {group} (asking the broker, without joining the group)")

        def waiting(info: GroupInfo, patience_s: float) -> None:
            say(
                f"  {_plural(len(info.members), 'member')} listed: live, or stopped less than a "
                f"session ({session_s:g}s) ago; checking again for up to {patience_s:.0f}s"
            )

        liveness = await live_members(admin, group, session_s, waiting)
        live = len(liveness.live)
        refusal = members_refusal(group, live, liveness.waited_s, force=force)
        if refusal is not None:
            if not dry_run:
                raise refusal.error()
            refusals.append(refusal)
            say(f"  refused: {_plural(live, 'live member')}")
        elif liveness.listed:
            say(f"  none live ({_plural(len(liveness.listed), 'stopped member')}, session over)")
        else:
            say("  none")

        ranges = await log_ranges(consumer, tps)
        moves = []
        for tp in tps:
            found = None
            if target.kind == "time":
                found = await offset_for_time(consumer, tp, target.value, ranges[tp])
            wanted = resolve_target(target, ranges[tp], committed[tp], found)
            span = ranges[tp]
            moves.append(Move(tp.partition, span.start, span.end, committed[tp], wanted))
    info = liveness.group
    return ReplayPlan(
        group, topic, target, tuple(moves), info.state, len(liveness.listed),
        len(liveness.live), tuple(refusals),
    )  # fmt: skip


async def execute_plan(bootstrap: str, settings: Settings, plan: ReplayPlan) -> list[int]:
    """Commit the plan's targets from outside the group; return the partitions moved.

    Raises the plan's refusal, if any. Raises WalletError (exit 1) naming what is and is not at
    its target when the broker refused the commit (a member joined since the check): a partial
    move is never reported as done.
    """
    if plan.refusal is not None:
        raise plan.refusal.error()
    offsets = {TopicPartition(plan.topic, move.partition): move.target for move in plan.moves}
    if not offsets:
        return []
    after, refused = await commit_outside(bootstrap, settings, plan.group, offsets)
    moved = sorted(tp.partition for tp, offset in after.items() if offset == offsets[tp])
    missed = sorted(tp.partition for tp, offset in after.items() if offset != offsets[tp])
    if refused is not None or missed:
        done = f"at the target: {moved}, not moved: {missed}" if moved else "nothing was moved"
        raise WalletError(
            f"the broker refused the commit for group {plan.group} ({refused or 'no answer'}): "
            f"a member joined it after the check; {done}. Stop its consumers and replay again"
        )
    return moved
