"""`--to` parsing and per-partition target resolution of `personas replay` (no broker)."""

from __future__ import annotations

import pytest

from agents.core.errors import InvalidMessage
from streams.ops.offsets import LogRange
from streams.ops.replay import Move, Target, parse_target, resolve_target


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("earliest", Target("earliest")),
        (" LATEST ", Target("latest")),
        ("offset:42", Target("offset", 42)),
        ("shift:-3", Target("shift", -3)),
        ("shift:+5", Target("shift", 5)),
        ("1700000000", Target("time", 1_700_000_000_000)),
        ("2023-11-14T22:13:20Z", Target("time", 1_700_000_000_000)),
        ("2023-11-14T22:13:20", Target("time", 1_700_000_000_000)),  # naive text is UTC
        ("2023-11-15T00:13:20+02:00", Target("time", 1_700_000_000_000)),
    ],
)
def test_parse_target(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["", "soon", "offset:x", "offset:-1", "shift:", "shift:1.5", "-5"])
def test_bad_targets_name_the_option(text: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_target(text)
    assert caught.value.field == "--to" and caught.value.exit_code == 2


SPAN = LogRange(start=10, end=50)


@pytest.mark.parametrize(
    ("target", "committed", "found", "expected"),
    [
        (Target("earliest"), 30, None, 10),
        (Target("latest"), 30, None, 50),
        (Target("offset", 20), 30, None, 20),
        (Target("offset", 5), 30, None, 10),  # clamped into the log
        (Target("offset", 99), 30, None, 50),
        (Target("shift", -5), 30, None, 25),
        (Target("shift", -50), 30, None, 10),
        (Target("shift", 100), 30, None, 50),
        (Target("shift", 3), None, None, 13),  # no commit: counted from the log start
        (Target("time", 0), 30, 42, 42),
    ],
)
def test_resolve_target(
    target: Target, committed: int | None, found: int | None, expected: int
) -> None:
    assert resolve_target(target, SPAN, committed, found) == expected


def test_time_target_needs_the_found_offset() -> None:
    with pytest.raises(ValueError):
        resolve_target(Target("time", 0), SPAN, None)


def test_move_counts() -> None:
    back = Move(partition=0, log_start=0, log_end=100, committed=80, target=20)
    assert (back.reread, back.skipped, back.lag_after) == (60, 0, 80)
    forward = Move(partition=0, log_start=0, log_end=100, committed=None, target=30)
    assert (forward.reread, forward.skipped, forward.lag_after) == (0, 30, 70)
