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

A replay is refused (`streams.ops.refusals.Refusal`), in this order:

    unknown-group   (exit 2) the group is none of ours (`readers`), is not on the broker, and
                    has no offsets on the topic: usually a typo, which would otherwise leave a
                    group that nobody reads and that `personas lag` reports for ever
    topic-not-read  (exit 2) the group exists but neither reads the topic nor has offsets on it
    live-members    (exit 1) the group has live members: their next commit would undo the move,
                    and a broker takes a group's commits only from the members holding its
                    partitions, so any move made now could only be partial

The first two are lifted by `allow_new_group`. Nothing lifts the third, `force` included: with
`force` the refusal says why (`refusals.members_refusal`). Live members are found from a
describe of the group, never by joining it (`streams.ops.offsets.live_members`), so checking
does not make a running worker rebalance; the commit is made from outside the group, which the
broker refuses, for every partition, if a member has joined since the check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.core.errors import InvalidMessage, WalletError
from agents.core.records import parse_timestamp
from config.settings import Settings, dlq_name
from streams.ops.groups import GroupInfo, Liveness, list_groups, live_members
from streams.ops.offsets import (
    LogRange,
    admin_client,
    commit_outside,
    committed_offsets,
    log_ranges,
    offset_for_time,
    reader,
)
from streams.ops.refusals import Refusal, members_refusal, plural, target_refusal
from streams.topics import redrive_group, stage_group, stage_topics

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
Say = Callable[[str], None]


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
    app_id = settings.worker.app_id
    groups: dict[str, tuple[str, ...]] = {
        stage_group(app_id, stage): (topic,) for stage, topic in stage_topics(settings).items()
    }
    groups[redrive_group(settings)] = tuple(
        dlq_name(topic) for topic in settings.topics.partitions()
    )
    return groups


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


@dataclass(frozen=True)
class _Check:
    """What every check of one replay needs, and how a refusal is met (raised, or kept)."""

    bootstrap: str
    settings: Settings
    group: str
    topic: str
    dry_run: bool
    say: Say

    def refused(self, refusal: Refusal, said: str) -> Refusal:
        """Raise `refusal` (`Refusal.error()`); with `dry_run`, say it and return it instead."""
        if not self.dry_run:
            raise refusal.error()
        self.say(f"  refused: {said}")
        return refusal


async def _partitions(
    consumer: AIOKafkaConsumer,
    topic: str,
    partitions: list[int] | None,
    known: dict[str, tuple[str, ...]],
) -> tuple[list[TopicPartition], list[TopicPartition]]:
    """Every partition of `topic`, and those to move; InvalidMessage (exit 2) for a bad name."""
    if topic not in await consumer.topics():
        ours = sorted({topic for topics in known.values() for topic in topics})
        raise InvalidMessage(
            "--topic", f"no topic {topic!r} on the broker; ours: {', '.join(ours)}"
        )
    numbers = sorted(consumer.partitions_for_topic(topic) or ())
    everyone = [TopicPartition(topic, p) for p in numbers]
    if not partitions:
        return everyone, everyone
    unknown = sorted(set(partitions) - set(numbers))
    if unknown:
        raise InvalidMessage("--partition", f"{topic} has partitions {numbers}, not {unknown}")
    return everyone, [tp for tp in everyone if tp.partition in set(partitions)]


async def _check_target(
    check: _Check,
    admin: AIOKafkaAdminClient,
    known: dict[str, tuple[str, ...]],
    committed: dict[TopicPartition, int | None],
    allow_new_group: bool,
) -> Refusal | None:
    """Whether the group may be moved on the topic (`target_refusal`)."""
    group, topic = check.group, check.topic
    has_offsets = any(offset is not None for offset in committed.values())
    listed = await list_groups(admin)
    reads = topic in known.get(group, ())
    holders: list[str] = []
    if not (allow_new_group or has_offsets or reads):  # refused: name who reads the topic
        others = [name for name in listed if name != group]
        holders = await _offset_holders(check.bootstrap, check.settings, others, list(committed))
    refusal = target_refusal(
        group, topic, known, has_offsets=has_offsets, listed=group in listed,
        holders=holders, allow_new_group=allow_new_group,
    )  # fmt: skip
    if refusal is not None:
        return check.refused(refusal, refusal.reason)
    if reads:
        check.say(f"  {group} reads {topic}")
    elif has_offsets:
        check.say(f"  {group} has offsets on {topic}")
    else:
        check.say(f"  {group} is new to {topic} (--allow-new-group)")
    return None


async def _check_members(
    check: _Check, admin: AIOKafkaAdminClient, force: bool
) -> tuple[Liveness, Refusal | None]:
    """The group's live members (`live_members`), and the refusal while any is left."""
    group, say = check.group, check.say
    session_s = check.settings.broker.session_timeout_s
    say(f"checking for live members of {group} (asking the broker, without joining the group)")

    def waiting(info: GroupInfo, patience_s: float) -> None:
        say(
            f"  {plural(len(info.members), 'member')} listed: live, or stopped less than a "
            f"session ({session_s:g}s) ago; checking again for up to {patience_s:.0f}s"
        )

    liveness = await live_members(admin, group, session_s, waiting)
    live = len(liveness.live)
    refusal = members_refusal(group, live, liveness.waited_s, force=force)
    if refusal is not None:
        return liveness, check.refused(refusal, plural(live, "live member"))
    if liveness.listed:
        say(f"  none live ({plural(len(liveness.listed), 'stopped member')}, session over)")
    else:
        say("  none")
    return liveness, None


async def _moves(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    target: Target,
    committed: dict[TopicPartition, int | None],
) -> tuple[Move, ...]:
    """Each partition's move to `target`."""
    ranges = await log_ranges(consumer, tps)
    moves = []
    for tp in tps:
        span = ranges[tp]
        found = None
        if target.kind == "time":
            found = await offset_for_time(consumer, tp, target.value, span)
        wanted = resolve_target(target, span, committed[tp], found)
        moves.append(Move(tp.partition, span.start, span.end, committed[tp], wanted))
    return tuple(moves)


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
    check = _Check(bootstrap, settings, group, topic, dry_run, say)
    say(f"checking group {group} and topic {topic} on the broker at {bootstrap}")
    async with reader(bootstrap, settings) as consumer, admin_client(bootstrap, settings) as admin:
        everyone, tps = await _partitions(consumer, topic, partitions, known)
        committed = await committed_offsets(bootstrap, settings, group, everyone)
        refusal = await _check_target(check, admin, known, committed, allow_new_group)
        liveness, busy = await _check_members(check, admin, force)
        moves = await _moves(consumer, tps, target, committed)
    refusals = tuple(found for found in (refusal, busy) if found is not None)
    return ReplayPlan(
        group, topic, target, moves, liveness.group.state, len(liveness.listed),
        len(liveness.live), refusals,
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
