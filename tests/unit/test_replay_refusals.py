"""When `personas replay` is refused, with which exit status and message (no broker)."""

from __future__ import annotations

import asyncio

import pytest

from agents.core.errors import InvalidMessage, WalletError
from config.settings import load_settings
from streams.cli import main
from streams.cli.parser import build_parser
from streams.cli.replay import _print_plan
from streams.ops import groups
from streams.ops.groups import GroupInfo
from streams.ops.lag import live_member_count
from streams.ops.replay import (
    Move,
    Refusal,
    ReplayPlan,
    Target,
    members_refusal,
    readers,
    target_refusal,
)
from streams.topics import STAGES

SETTINGS = load_settings(
    env={"PERSONAS_TOPICS__PREFIX": '"x-"', "PERSONAS_WORKER__APP_ID": '"app"'}
)
GROUPS = readers(SETTINGS)


def test_each_stage_group_reads_one_topic_with_the_prefix() -> None:
    assert {f"app-{stage}" for stage in STAGES} <= set(GROUPS)
    assert GROUPS["app-ingest"] == ("x-trades",)
    assert GROUPS["app-features"] == ("x-wallet-discovered",)
    assert GROUPS["app-classifier"] == ("x-wallet-features",)
    assert GROUPS["app-rebuild"] == ("x-rebuild-jobs",)
    assert GROUPS["app-dlq-redrive"] == (
        "x-trades.dlq", "x-wallet-discovered.dlq", "x-wallet-features.dlq", "x-rebuild-jobs.dlq",
    )  # fmt: skip


def test_default_groups_are_the_readme_s() -> None:
    groups = readers(load_settings(env={}))
    assert groups["wallet-personas-features"] == ("wallet-discovered",)


@pytest.mark.parametrize(
    ("group", "topic", "has_offsets", "listed", "allow", "reason"),
    [
        ("app-features", "x-wallet-discovered", False, False, False, None),
        ("app-ingest", "x-trades", False, True, False, None),
        ("app-ingest", "x-wallet-discovered", False, True, False, "topic-not-read"),
        ("app-ingest", "x-wallet-discovered", True, True, False, None),  # offsets: known
        ("app-ingest", "x-wallet-discovered", False, True, True, None),
        ("app-feature", "x-wallet-discovered", False, False, False, "unknown-group"),
        ("app-feature", "x-wallet-discovered", False, False, True, None),
        ("tool", "x-wallet-discovered", True, True, False, None),
        ("tool", "x-wallet-discovered", False, True, False, "topic-not-read"),  # other topics
    ],
)
def test_target_refusal(
    group: str, topic: str, has_offsets: bool, listed: bool, allow: bool, reason: str | None
) -> None:
    refusal = target_refusal(
        group, topic, GROUPS, has_offsets=has_offsets, listed=listed, allow_new_group=allow
    )
    assert (refusal.reason if refusal else None) == reason
    if refusal is not None:
        assert refusal.exit_code == 2
        assert "--allow-new-group" in refusal.message


def test_unknown_group_names_the_reader_and_every_group_of_ours() -> None:
    refusal = target_refusal(
        "app-feature", "x-wallet-discovered", GROUPS, has_offsets=False, listed=False,
        holders=["tool"],
    )  # fmt: skip
    assert refusal is not None
    error = refusal.error()
    assert isinstance(error, InvalidMessage) and error.field == "--group"
    assert "unknown group 'app-feature'" in refusal.message
    assert "x-wallet-discovered is read by app-features, tool" in refusal.message
    for group, topics in GROUPS.items():
        assert f"{group} ({', '.join(topics)})" in refusal.message


def test_topic_not_read_names_what_the_group_reads_and_who_reads_the_topic() -> None:
    refusal = target_refusal(
        "app-ingest", "x-wallet-discovered", GROUPS, has_offsets=False, listed=True
    )
    assert refusal is not None and refusal.option == "--topic"
    first = refusal.message.splitlines()[0]
    assert first == "app-ingest reads x-trades, not x-wallet-discovered (and has no offsets on it)"
    assert "x-wallet-discovered is read by app-features" in refusal.message


def test_a_topic_nobody_reads() -> None:
    refusal = target_refusal("app-ingest", "x-other", GROUPS, has_offsets=False, listed=True)
    assert refusal is not None and "no group reads x-other" in refusal.message


def test_live_members_refuse_with_exit_1_even_forced() -> None:
    assert members_refusal("g", 0, 7.0) is None
    assert members_refusal("g", 0, 7.0, force=True) is None
    plain = members_refusal("g", 2, 7.0)
    forced = members_refusal("g", 1, 7.0, force=True)
    assert plain is not None and forced is not None
    for refusal in (plain, forced):
        assert refusal.reason == "live-members" and refusal.exit_code == 1
        assert "nothing was moved" in refusal.message
        error = refusal.error()
        assert type(error) is WalletError and error.exit_code == 1
    assert "2 live members" in plain.message and "--force" not in plain.message
    assert "--force does not change this" in forced.message


def _plan(*refusals: Refusal) -> ReplayPlan:
    move = Move(partition=0, log_start=0, log_end=10, committed=10, target=0)
    return ReplayPlan("g", "t", Target("earliest"), (move,), "Empty", 1, 0, refusals)


def test_the_plan_s_refusal_is_the_first_one_met() -> None:
    unknown = Refusal("unknown-group", "typo")
    live = Refusal("live-members", "busy")
    plan = _plan(unknown, live)
    assert plan.refusal is unknown
    assert plan.as_dict()["refused"] == {"reason": "unknown-group", "message": "typo", "exit": 2}
    assert _plan().refusal is None and _plan().as_dict()["refused"] is None


def test_dry_run_says_whether_the_real_run_would_go_ahead(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _print_plan(_plan(), dry_run=True)
    assert capsys.readouterr().out.splitlines()[-1] == "the real run would go ahead"
    _print_plan(_plan(Refusal("live-members", "busy")), dry_run=True)
    out = capsys.readouterr().out
    assert "would move 1 partition(s); 10 message(s) to re-read" in out
    assert out.splitlines()[-1] == "the real run would be refused (exit 1): busy"
    _print_plan(_plan(), dry_run=False)
    assert "would" not in capsys.readouterr().out


class _Group:
    """A fake coordinator: members drop out after `checks` session checks."""

    def __init__(self, members: tuple[str, ...], checks: int | None) -> None:
        self.members, self.checks_left, self.checks = members, checks, 0

    async def describe(self, _admin: object, group: str) -> GroupInfo:
        return GroupInfo(group, "Stable" if self.members else "Empty", self.members)

    async def expire(self, _admin: object, _group: str) -> None:
        self.checks += 1
        if self.checks_left is not None:
            self.checks_left -= 1
            if self.checks_left <= 0:
                self.members = ()


@pytest.mark.parametrize(
    ("members", "checks", "live", "waits", "at_least"),
    [
        ((), None, 0, 0, 0),  # nobody listed: no check at all
        (("m",), 1, 0, 0, 1),  # stopped long ago: the first check drops it, no wait
        (("m",), 3, 0, 1, 3),  # stopped a moment ago: dropped once its session is over
        (("m", "n"), None, 2, 1, 2),  # live: still listed when the patience runs out
    ],
)
def test_live_members_waits_one_session_at_most(
    monkeypatch: pytest.MonkeyPatch,
    members: tuple[str, ...],
    checks: int | None,
    live: int,
    waits: int,
    at_least: int,
) -> None:
    fake = _Group(members, checks)
    monkeypatch.setattr(groups, "describe_group", fake.describe)
    monkeypatch.setattr(groups, "expire_sessions", fake.expire)
    monkeypatch.setattr(groups, "EXPIRY_POLL_S", 0.01)
    monkeypatch.setattr(groups, "EXPIRY_MARGIN_S", 0.05)
    told: list[float] = []
    found = asyncio.run(
        groups.live_members(object(), "g", 0.05, lambda _info, patience: told.append(patience))
    )
    assert (len(found.live), len(told)) == (live, waits)
    assert found.listed == members
    assert fake.checks >= at_least
    assert told in ([], [pytest.approx(0.1)])
    assert found.waited_s < 1.0


def test_replay_and_lag_count_live_members_by_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group the broker calls Empty has no live member, whatever it lists: replay is not
    refused where `personas lag` would call the group STOP."""

    async def describe(_admin: object, group: str) -> GroupInfo:
        return GroupInfo(group, "Empty", ("stale",))

    async def expire(_admin: object, _group: str) -> None:
        return None

    monkeypatch.setattr(groups, "describe_group", describe)
    monkeypatch.setattr(groups, "expire_sessions", expire)
    found = asyncio.run(groups.live_members(object(), "g", 5.0))
    assert found.live == () and found.listed == ("stale",)
    assert live_member_count(found.group) == len(found.live) == 0
    assert found.waited_s < 1.0  # nobody live: no wait for sessions to end
    assert members_refusal("g", len(found.live), found.waited_s) is None


def test_force_is_hidden_but_still_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["replay", "--group", "g", "--topic", "t", "--to", "latest"]
    assert build_parser().parse_args([*argv, "--force"]).force is True
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    shown = capsys.readouterr().out
    assert "--allow-new-group" in shown and "--force" not in shown
