"""`personas dlq list|redrive|show`: dead letters by reason, re-driven, or one in full.

The Python API and the at-least-once/idempotence rules are in `streams.ops.dlq`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import Sequence
from typing import Any

from agents.core.errors import InvalidMessage
from config.settings import load_settings
from streams.broker import broker_for
from streams.cli.output import emit_json, utc_time
from streams.cli.status import EXIT_OK
from streams.ops.dlq import (
    SAMPLE_LETTERS,
    DeadLetter,
    History,
    ReasonGroup,
    RedriveReport,
    find_letter,
    list_dead_letters,
    offending_value,
    preview,
    redrive,
)
from streams.ops.offsets import quiet_clients

__all__ = ["command_dlq"]


def command_dlq(args: argparse.Namespace) -> int:
    """`list`: dead letters by reason; `redrive`: send them back; `show`: one letter in full."""
    _check_usage(args)
    settings = load_settings(args.config)
    quiet_clients(args.verbose)
    with broker_for(settings, start_embedded=False) as bootstrap:
        if args.action == "list":
            examples = None if args.all else SAMPLE_LETTERS
            listing = list_dead_letters(bootstrap, settings, args.topic, args.reason, examples)
            groups, total = asyncio.run(listing)
            if args.json:
                pending = sum(group.pending for group in groups)
                emit_json({"total": total, "pending": pending,
                           "groups": [group.as_dict() for group in groups]})  # fmt: skip
            else:
                _print_listing(groups, total)
        elif args.action == "show":
            letter, history = asyncio.run(find_letter(bootstrap, settings, args.address))
            if args.json:
                emit_json(_shown(letter, history))
            else:
                _print_letter(letter, history)
        else:
            report = asyncio.run(redrive(bootstrap, settings, args.topic, args.reason))
            if args.json:
                emit_json(report.as_dict())
            else:
                _print_redrive(report)
    return EXIT_OK


def _check_usage(args: argparse.Namespace) -> None:
    """An ADDRESS belongs to `show` alone, and `show` takes nothing else (exit 2)."""
    if args.action == "show":
        if not args.address:
            raise InvalidMessage("ADDRESS", "`dlq show` needs one, e.g. trades:0:42")
        extra = [name for name in ("topic", "reason") if getattr(args, name)]
        if args.all:
            extra.append("all")
        if extra:
            raise InvalidMessage(f"--{extra[0]}", "not an option of `dlq show`")
    elif args.address:
        raise InvalidMessage("ADDRESS", f"only `dlq show` takes one, not `dlq {args.action}`")


def _when(timestamp: float | None) -> str:
    return utc_time(timestamp, missing="unknown")


def _redriven(history: History) -> str:
    times = history.redrives
    return "never re-driven" if not times else f"re-driven {times}×"


def _print_listing(groups: Sequence[ReasonGroup], total: int) -> None:
    if not groups:
        print("no dead letters")
        return
    for group in groups:
        print(f"{group.topic}  {group.count:,} message(s), {group.pending:,} pending  "
              f"{group.error}: {group.reason}")  # fmt: skip
        for history in group.letters:
            got = offending_value(history.latest.reason)
            offending = f"  got {got}" if got is not None else ""
            print(f"  {history.address!s:<28} {history.status:<9} {_redriven(history):<16}"
                  f"{offending}  value {preview(history.latest.value)}")  # fmt: skip
        if group.count > len(group.letters):
            print(f"  … and {group.count - len(group.letters):,} more (--all lists them)")
    pending = sum(group.pending for group in groups)
    print(f"{total:,} dead-lettered message(s), {pending:,} pending re-drive; "
          "`personas dlq show ADDRESS` prints one")  # fmt: skip


def _print_redrive(report: RedriveReport) -> None:
    for target, count in sorted(report.sent.items()):
        print(f"re-drove {count:,} message(s) to {target}")
    if not report.sent:
        print("nothing to re-drive")
    if report.already_redriven:
        print(f"{report.already_redriven:,} letter(s) skipped: re-driven before and "
              "dead-lettered again, their newer letter is the one re-driven")  # fmt: skip
    if report.copies:
        print(f"{report.copies:,} copy letter(s) skipped: the same letter again, sent twice by "
              "a worker stopped before its commit")  # fmt: skip
    if report.unreadable:
        print(f"{report.unreadable:,} unreadable letter(s) skipped: not dead-letter envelopes, "
              "never re-driven (`personas dlq list` lists them)")  # fmt: skip
    if report.left_behind:
        print(f"{report.left_behind:,} dead letter(s) left for a later run (--reason filtered "
              "them out)")  # fmt: skip


def _text(raw: bytes | None, name: str) -> dict[str, Any]:
    """`raw` for JSON: as text when it is UTF-8, else in base64 under `<name>_base64`."""
    if raw is None:
        return {name: None}
    try:
        return {name: raw.decode()}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(raw).decode()}


def _shown(letter: DeadLetter, history: History) -> dict[str, Any]:
    return {
        "letter": str(letter.at),
        "source": str(history.origin) if history.origin else None,
        "status": history.status,
        "redrives": history.redrives,
        **_text(letter.key, "key"),
        "envelope": letter.envelope,
        "history": [
            {"letter": str(kept.at), "redrives": kept.redrives, "failed_at": kept.failed_at,
             "redriven_copy": kept.envelope.get("redriven_copy")}
            for kept in history.letters
        ],
        "copies": [str(copy.at) for copy in history.copies],
    }  # fmt: skip


def _print_letter(letter: DeadLetter, history: History) -> None:
    newest = " (the newest)" if letter.at == history.latest.at and history.origin else ""
    print(f"letter     {letter.at}{newest}")
    if history.origin is not None:
        print(f"source     {history.origin}  {history.status}, {_redriven(history)}")
    print(f"failed at  {_when(letter.failed_at)}")
    print(f"error      {letter.error}")
    print(f"reason     {letter.reason}")
    print(f"key        {_display(letter.key)}")
    if letter.headers:
        shown = ", ".join(f"{name}={_display(value)}" for name, value in letter.headers)
        print(f"headers    {shown}")
    try:
        value = letter.value.decode()
        print(f"value      {len(letter.value):,} bytes")
    except UnicodeDecodeError:
        value = base64.b64encode(letter.value).decode()
        print(f"value      {len(letter.value):,} bytes, not UTF-8: in base64")
    print(value)
    if len(history.letters) > 1 or history.copies:
        print("letters of this message:")
        for kept in history.letters:
            copy = kept.envelope.get("redriven_copy")
            what = f"after re-drive {kept.redrives} (copy {copy})" if kept.redrives else "first"
            print(f"  {kept.at!s:<28} {what}, failed {_when(kept.failed_at)}")
        for copy in history.copies:
            print(f"  {copy.at!s:<28} the same letter again (re-drive {copy.redrives}), sent "
                  "twice by a worker stopped before its commit")  # fmt: skip


def _display(raw: bytes | None) -> str:
    if raw is None:
        return "(none)"
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return repr(raw)
