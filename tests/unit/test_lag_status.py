"""The lag status rule as pure functions: a partition's status, live members, what is measured."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from streams.ops.lag import (
    PartitionLag,
    group_status,
    live_member_count,
    partition_status,
    partitions_to_measure,
)
from streams.ops.offsets import GroupInfo


def _part(committed: int | None, end: int, lag_s: float, status: str = "OK") -> PartitionLag:
    lag = max(end - (committed or 0), 0)
    return PartitionLag("t", 0, committed, 0, end, lag, lag_s, status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "members", "previous", "status"),
    [
        (_part(10, 10, 0), 1, None, "OK"),
        (_part(10, 10, 0), 0, None, "OK"),  # nobody consuming, but nothing to consume
        (_part(12, 10, 0), 1, None, "ERR"),  # committed beyond the log end: the log was lost
        (_part(12, 10, 0), 0, None, "ERR"),  # ERR first: the group must be reset, live or not
        (_part(5, 10, 1), 0, None, "STOP"),
        (_part(None, 10, 1), 0, None, "STOP"),  # never committed on a partition it reads
        (_part(5, 10, 90), 0, _part(5, 9, 80), "STOP"),  # not STALL: nobody is there to stall
        (_part(5, 10, 1), 1, None, "OK"),  # lag being worked through
        (_part(5, 10, 90), 1, None, "WARN"),  # old lag
        (_part(5, 10, 90), 1, _part(5, 9, 80), "STALL"),  # not moving, old messages waiting
        (_part(5, 10, 30), 1, _part(5, 9, 20), "WARN"),  # not moving, but young: growing
        (_part(5, 10, 1), 1, _part(4, 8, 1), "WARN"),  # lag growing
        (_part(6, 10, 1), 1, _part(5, 10, 1), "OK"),  # lag shrinking
    ],
)
def test_partition_status_rule(
    current: PartitionLag, members: int, previous: PartitionLag | None, status: str
) -> None:
    assert partition_status(current, members, previous) == status


@pytest.mark.parametrize(
    ("info", "live"),
    [
        (GroupInfo("g", "Stable", ("m-1",)), 1),
        (GroupInfo("g", "Stable", ("m-1", "m-2")), 2),
        (GroupInfo("g", "PreparingRebalance", ("m-1",)), 1),  # Kafka: a member is rejoining
        (GroupInfo("g", "Empty"), 0),  # left, or dropped by the broker's session check
        (GroupInfo("g", "Empty", ("m-1",)), 0),  # Empty has no consumer, whatever is listed
        (GroupInfo("g", "Dead", ("m-1",)), 0),
        (GroupInfo("g", "Unknown"), 0),  # a group the broker does not know
    ],
)
def test_live_member_count(info: GroupInfo, live: int) -> None:
    assert live_member_count(info) == live


T, U = "discovered", "trades"


@pytest.mark.parametrize(
    ("committed", "assigned", "measured"),
    [
        ({(T, 0): 3, (T, 1): 4}, (), [(T, 0), (T, 1)]),
        # committed on p0 only: p1 of the same topic is owed from the log start
        ({(T, 0): 3, (T, 1): None}, (), [(T, 0), (T, 1)]),
        # a topic the group never committed on and is not assigned is not its
        ({(T, 0): 3, (U, 0): None, (U, 1): None}, (), [(T, 0)]),
        # assigned to a member (Kafka lists assignments): owed even before a first commit
        ({(T, 0): None, (U, 0): None}, (U,), [(U, 0)]),
        ({(T, 0): None}, (), []),
    ],
)
def test_partitions_to_measure(
    committed: dict[tuple[str, int], int | None],
    assigned: tuple[str, ...],
    measured: list[tuple[str, int]],
) -> None:
    offsets = {TopicPartition(topic, p): off for (topic, p), off in committed.items()}
    assert partitions_to_measure(offsets, assigned) == [TopicPartition(*tp) for tp in measured]


@pytest.mark.parametrize(
    ("statuses", "worst"),
    [
        ((), "OK"),
        (("OK", "WARN"), "WARN"),
        (("STALL", "WARN", "OK"), "STALL"),
        (("STALL", "STOP"), "STOP"),
        (("STOP", "ERR", "OK"), "ERR"),
    ],
)
def test_group_status_is_the_worst_partition(statuses: tuple[str, ...], worst: str) -> None:
    assert group_status([_part(5, 10, 1, status) for status in statuses]) == worst
