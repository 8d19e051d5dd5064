"""Why a replay is refused: `target_refusal` (the group and topic) and `members_refusal`.

The reasons, their exit statuses and their order are in `streams.ops.replay`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agents.core.errors import InvalidMessage, WalletError

__all__ = ["ALLOW_NEW", "Reason", "Refusal", "members_refusal", "plural", "target_refusal"]

Reason = Literal["unknown-group", "topic-not-read", "live-members"]

ALLOW_NEW = "a new consumer group, or one to start on this topic: pass --allow-new-group"


def plural(count: int, noun: str) -> str:
    """`1 member`, `2 members`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


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
        f"group {group} has {plural(live, 'live member')}, still listed after {checked_s:.0f}s "
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
