"""`personas lag --watch` output: redrawn in place on a terminal, successive tables when piped,
one JSON object per sample per line with --json; each sample judged against the last."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import pytest

from streams.cli.lag import MIN_WATCH_S, REDRAW, watch
from streams.ops.lag import GroupLag, PartitionLag


class _Stop(Exception):
    """Ends a watch loop after the samples a test wants (Ctrl-C in real life)."""


def _group(committed: int, at: float) -> GroupLag:
    part = PartitionLag("wallet-discovered", 0, committed, 0, 10, 10 - committed, 1.0, "OK")
    return GroupLag("wallet-personas-features", "Stable", 1, "OK", (part,), at)


def _watch(
    samples: int, *, as_json: bool, redraw: bool
) -> tuple[list[dict[str, str]], list[float]]:
    """Run `watch` for `samples` samples; return what each sample was given and the sleeps."""
    given: list[dict[str, str]] = []
    slept: list[float] = []

    def sample(previous: Mapping[str, GroupLag]) -> list[GroupLag]:
        given.append({name: str(group.partitions[0].committed) for name, group in previous.items()})
        return [_group(len(given), 1_793_491_200.0 + len(given))]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == samples:
            raise _Stop

    with pytest.raises(_Stop):
        watch(sample, 0.1, as_json=as_json, redraw=redraw, sleep=sleep)
    return given, slept


def test_watch_pauses_and_judges_each_sample_against_the_last() -> None:
    given, slept = _watch(3, as_json=False, redraw=False)
    assert slept == [MIN_WATCH_S] * 3
    assert given == [{}, {"wallet-personas-features": "1"}, {"wallet-personas-features": "2"}]


def test_watch_on_a_terminal_redraws_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    _watch(2, as_json=False, redraw=True)
    out = capsys.readouterr().out
    screens = out.split(REDRAW)
    assert screens[0] == "" and len(screens) == 3  # each sample clears the screen first
    for screen in screens[1:]:
        assert screen.count("GROUP wallet-personas-features") == 1
    assert "2026-11-01 00:00:01Z" in screens[1] and "2026-11-01 00:00:02Z" in screens[2]


def test_watch_piped_prints_successive_tables(capsys: pytest.CaptureFixture[str]) -> None:
    _watch(2, as_json=False, redraw=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert out.count("GROUP wallet-personas-features") == 2
    first, second = out.split("\n\n")
    assert "2026-11-01 00:00:01Z" in first and "2026-11-01 00:00:02Z" in second


@pytest.mark.parametrize("redraw", [False, True])
def test_watch_json_is_one_object_per_sample_per_line(
    redraw: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    _watch(3, as_json=True, redraw=redraw)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    samples = [orjson.loads(line) for line in lines]
    assert [s["groups"][0]["partitions"][0]["committed"] for s in samples] == [1, 2, 3]
