"""Consumer groups as the broker describes them, and which of their members are live.

The embedded broker (`../shared/BROKER.md`) checks a group's sessions only when a request for that
group comes in (join, heartbeat, leave), and a member that was its group's first (generation 0
there) exits without a LeaveGroup (aiokafka sends none at generation 0), so a stopped worker stays
listed until something makes the broker check. `session_checked` sends a heartbeat from no member,
which runs that check without touching live members (Kafka expires sessions by itself and answers
UNKNOWN_MEMBER_ID); `live_members` repeats it until the stopped members' sessions are over.
`live_members_of` is the one rule for which listed members count as live, used by
`personas lag` and `personas replay` alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import HeartbeatRequest

__all__ = [
    "NO_CONSUMER_STATES",
    "GroupInfo",
    "Liveness",
    "describe_group",
    "expire_sessions",
    "list_groups",
    "live_members",
    "live_members_of",
    "session_checked",
]

log = logging.getLogger("personas.offsets")

# A stopped member is dropped once its session has passed with no heartbeat; the margin covers a
# heartbeat sent just before it stopped and the broker's timer. Checked every EXPIRY_POLL_S.
EXPIRY_MARGIN_S = 1.0
EXPIRY_POLL_S = 0.5

#: Group states in which no consumer is a member, whatever else the description lists.
NO_CONSUMER_STATES = frozenset({"Empty", "Dead"})


@dataclass(frozen=True)
class GroupInfo:
    """What the broker says about a group: state, member ids and the topics they were assigned."""

    group: str
    state: str
    members: tuple[str, ...] = ()
    topics: frozenset[str] = field(default_factory=frozenset)


def live_members_of(info: GroupInfo) -> tuple[str, ...]:
    """The members `info` lists, none in a state that has no consumer (Empty, Dead).

    Live only when `info` was read after a session check (`session_checked`).
    """
    return () if info.state in NO_CONSUMER_STATES else info.members


async def list_groups(admin: AIOKafkaAdminClient) -> list[str]:
    """Every consumer group the broker knows."""
    return sorted(str(row[0]) for row in await admin.list_consumer_groups())


def _assigned_topics(members: Iterable[Any]) -> frozenset[str]:
    """The topics the members' assignments name."""
    topics: set[str] = set()
    for member in members:
        raw = member[4]
        if raw:
            try:
                assignment = ConsumerProtocolMemberAssignment.decode(raw)
                topics.update(topic for topic, _ in assignment.assignment)
            except Exception:  # an assignment we cannot decode names no topic
                continue
    return frozenset(topics)


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupInfo:
    """State, members and assigned topics of `group` (members may be stale: see the module doc)."""
    responses = await admin.describe_consumer_groups([group])
    for response in responses:
        for row in response.groups:
            error_code, group_id, state, _protocol_type, _protocol, members = row[:6]
            if group_id != group or error_code:
                continue
            ids = tuple(str(member[0]) for member in members)
            return GroupInfo(group, str(state), ids, _assigned_topics(members))
    return GroupInfo(group, "Unknown")


async def expire_sessions(admin: AIOKafkaAdminClient, group: str) -> None:
    """Have the group's coordinator drop the members whose session is over; live ones stay.

    A heartbeat from no member ("" at generation -1): every broker refuses it (unknown member)
    and changes nothing, except that the embedded broker first applies the session timeout to the
    members it lists, as on any member's heartbeat. No live member is touched, so nobody
    rebalances. Send it only to a group that lists members (`session_checked` does): for a group
    it does not know, the embedded broker would create an empty one.
    """
    try:
        coordinator = await admin.find_coordinator(group)
        # aiokafka's admin client has no heartbeat call: this is the path its own calls take.
        await admin._send_request_to_node(coordinator, HeartbeatRequest(group, -1, ""))
    except KafkaError as exc:  # the describe that follows is then all there is to go on
        log.debug("session check of group %s failed: %s", group, exc)


async def session_checked(admin: AIOKafkaAdminClient, info: GroupInfo) -> GroupInfo:
    """`info` again, after the broker dropped the members silent past their session timeout.

    A group that lists no member is returned as it is (see `expire_sessions`).
    """
    if not info.members:
        return info
    await expire_sessions(admin, info.group)
    return await describe_group(admin, info.group)


@dataclass(frozen=True)
class Liveness:
    """A group's members: `listed` at first, `live` once stopped members' sessions were over."""

    group: GroupInfo
    listed: tuple[str, ...]
    waited_s: float

    @property
    def live(self) -> tuple[str, ...]:
        return live_members_of(self.group)


async def live_members(
    admin: AIOKafkaAdminClient,
    group: str,
    session_s: float,
    on_wait: Callable[[GroupInfo, float], None] | None = None,
) -> Liveness:
    """The group's members once every stopped one has had `session_s` to expire. Never joins.

    Returns at once when no member is live after one session check; else calls
    `on_wait(info, patience_s)`, with the group as that check left it, and checks again every
    EXPIRY_POLL_S until no member is live or `session_s` + EXPIRY_MARGIN_S have passed: members
    still listed then are live (or stopped, with a session longer than `session_s`).
    """
    started = time.monotonic()
    first = await describe_group(admin, group)
    info = await session_checked(admin, first)
    if live_members_of(info):
        patience = session_s + EXPIRY_MARGIN_S
        if on_wait is not None:
            on_wait(info, patience)
        deadline = started + patience
        while live_members_of(info) and time.monotonic() < deadline:
            await asyncio.sleep(EXPIRY_POLL_S)
            info = await session_checked(admin, info)
    return Liveness(info, first.members, time.monotonic() - started)
