"""The `personas` command tree: every command, its options and where it is implemented.

Each command has one small function adding its arguments, and one row in `COMMANDS` naming its
summary and its handler (`module:function`, imported only when that command runs, so that
`--help` never loads Faust or aiokafka). This module imports nothing but the stdlib.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.cli.status import EXIT_USAGE

__all__ = ["COMMANDS", "Command", "build_parser"]

MAX_WIDTH = 100  # help text wider than this is hard to read, whatever the terminal

TIME = "epoch seconds or ISO-8601 (no zone = UTC)"

DESCRIPTION = "Find the prediction-market traders worth following (SPEC §11)."

EPILOG = f"""\
times (T): {TIME}, e.g. 1793491200 or 2026-11-01T00:00:00Z
environment: PERSONAS_DB (SQLite path) and PERSONAS_BROKER (host:port[,…]; unset: the
  embedded broker) override --config; PERSONAS_<SECTION>__<KEY> overrides any key
broker: run, rebuild, publish, replay, lag and dlq use PERSONAS_BROKER or the running broker
  (`personas broker`, or a worker's); only run starts one of its own when there is none
exit status: 0 success, 2 bad usage or bad input, 1 otherwise
`personas COMMAND --help` describes each command's options."""


class _Parser(argparse.ArgumentParser):
    """Exits 2 on bad usage (SPEC §11), with the usage line and the error on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"personas: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; option help is wrapped at a readable width."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size().columns - 2, MAX_WIDTH)
        super().__init__(prog, max_help_position=30, width=width)


Arguments = Callable[[argparse.ArgumentParser], None]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE",
        help="TOML file read over the defaults (config/default.toml); the PERSONAS_* "
        "environment overrides both",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="machine-readable output: one JSON object per line on stdout",
    )  # fmt: skip
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging on stderr (default: info)"
    )


def _time(parser: argparse.ArgumentParser, option: str, meaning: str, default: str) -> None:
    parser.add_argument(option, metavar="T", help=f"{meaning}: {TIME} (default: {default})")


def _wallet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "wallet", metavar="WALLET", help="the wallet: 0x and 40 hex characters, any case"
    )


def _run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-rebuild", action="store_true",
        help="do not schedule the daily rebuild (default: scheduled at rebuild.at, UTC, "
        "when rebuild.enabled)",
    )  # fmt: skip


def _broker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=0, metavar="N",
        help="listen on port N, 0 to 65535 (default: 0, a free port; the run file beside the "
        "database says which)",
    )  # fmt: skip


def _demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wallets", type=int, default=3000, metavar="N",
        help="wallets to generate and run through the pipeline, at least 1 (default: 3000)",
    )  # fmt: skip
    parser.add_argument(
        "--days", type=int, default=90, metavar="D",
        help="days of trade history, at least 60 (default: 90)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=7, metavar="S",
        help="random seed: the same seed gives the same wallets (default: 7)",
    )  # fmt: skip


def _generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wallets", type=int, required=True, metavar="N", help="wallets to generate, at least 1"
    )
    parser.add_argument(
        "--days", type=int, required=True, metavar="D",
        help="days of history ending at --end, at least 60 (planted wallets need 50+)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S",
        help="random seed: the same options give the same files (default: 0)",
    )  # fmt: skip
    _time(parser, "--end", "the data's as_of, when its last day ends", "2026-11-01T00:00:00Z")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="F",
        help="trades JSONL to write; <stem>.markets.jsonl and <stem>.labels.jsonl (the planted "
        "wallets' expected classification) go beside it",
    )  # fmt: skip


def _import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind", choices=["trades"], metavar="trades", help="what FILE holds (the only kind)"
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE",
        help="trades (SPEC §1): JSONL, or CSV with a header when the name ends in .csv",
    )  # fmt: skip
    parser.add_argument(
        "--markets", type=Path, metavar="F",
        help="markets (condition_id, category), JSONL or CSV, loaded before the trades",
    )  # fmt: skip


def _features(parser: argparse.ArgumentParser) -> None:
    _wallet(parser)
    parser.add_argument(
        "--window", type=int, default=30, metavar="D",
        help="window length in days, at least 1 (default: 30)",
    )  # fmt: skip
    _time(parser, "--as-of", "the end of the window", "now")


def _classify(parser: argparse.ArgumentParser) -> None:
    _wallet(parser)
    _time(parser, "--as-of", "classify as of this time", "now")


def _rebuild(parser: argparse.ArgumentParser) -> None:
    _time(parser, "--as-of", "the end of the 7/30/90-day windows", "now")
    parser.add_argument(
        "--no-publish", action="store_true",
        help="write the features to SQLite only (default: also publish every wallet's 30-day "
        "FeatureSet for reclassification, which needs a broker; a backfill publishes each day's "
        "after writing it, so past days get classifications too)",
    )  # fmt: skip
    parser.add_argument(
        "--from", dest="from_day", metavar="DATE",
        help="backfill past days from DATE (YYYY-MM-DD, a UTC day; a time T means its UTC day), "
        "each as of its end, 23:59:59 UTC, oldest first; with --to, not with --as-of",
    )  # fmt: skip
    parser.add_argument(
        "--to", dest="to_day", metavar="DATE",
        help="the last day of the backfill, included; a day that has ended (yesterday at latest)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="backfill: recompute the days already done too (default: skip them, so a killed "
        "backfill resumes where it stopped)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true",
        help="backfill: list the days, each with its active wallets and what would be done; "
        "write nothing",
    )  # fmt: skip
    parser.add_argument(
        "--distributed", action="store_true",
        help="start the rebuild on the workers instead (`personas run`, as the leader does "
        "daily): publish its shards as jobs on rebuild-jobs and return; needs a broker",
    )  # fmt: skip
    parser.add_argument(
        "--status", action="store_true",
        help="show the last rebuild started on the workers (or the one running): its day, "
        "shards done, wallets, start and end, the workers that did its shards, its skew",
    )  # fmt: skip


def _publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind", choices=["discovered", "trades"], metavar="discovered|trades",
        help="discovered: wallet-discovered events; trades: trade events (--file only)",
    )  # fmt: skip
    parser.add_argument(
        "wallets", nargs="*", metavar="WALLET",
        help="wallets to announce as discovered now (discovered only; or --file)",
    )  # fmt: skip
    parser.add_argument(
        "--file", type=Path, metavar="F",
        help="JSONL or CSV of events: discovered → proxy_wallet[, discovered_at, source]; "
        "trades → trades (SPEC §1). Validated whole first: one bad line and nothing is sent",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, metavar="N",
        help="send at most N messages per second (default: as fast as the broker takes them)",
    )  # fmt: skip
    parser.add_argument(
        "--source", default="cli", metavar="NAME",
        help="the source of discoveries that name none (default: cli)",
    )  # fmt: skip


def _replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group", required=True, metavar="G",
        help="the consumer group whose offsets move, e.g. wallet-personas-features",
    )  # fmt: skip
    parser.add_argument(
        "--topic", required=True, metavar="T", help="the topic the group's offsets move on"
    )
    parser.add_argument(
        "--to", required=True, metavar="WHERE",
        help="earliest | latest | a time, the first message at or after it: ISO-8601 (no zone = "
        "UTC) or epoch seconds | offset:N (clamped into the log) | shift:±N (committed + N, "
        "clamped)",
    )  # fmt: skip
    parser.add_argument(
        "--partition", type=int, action="append", metavar="P",
        help="only partition P; repeat for more (default: every partition)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print each partition's move and the messages to re-read, and whether the real run "
        "would be refused and why; change nothing; exit with the real run's status",
    )  # fmt: skip
    # Accepted so that old scripts still run; it changes nothing (a note says so when given).
    parser.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--allow-new-group", action="store_true",
        help="accept a group that none of our consumers uses and that has no offsets on the "
        "topic, e.g. a new consumer to start from a chosen point (default: refuse, exit 2: "
        "usually a typo)",
    )  # fmt: skip


def _watch_seconds(text: str) -> float:
    """`--watch S`: a finite number of seconds above 0 (0, negatives and nan would never pause)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"needs a finite number of seconds above 0, got {text!r}")
    return seconds


def _lag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group", action="append", metavar="G",
        help="only group G; repeat for more (default: the worker's groups and every group "
        "with offsets on our topics)",
    )  # fmt: skip
    parser.add_argument(
        "--watch", type=_watch_seconds, nargs="?", const=2.0, metavar="S",
        help="sample again every S seconds (default S: 2, at least 0.5) until Ctrl-C; STALL "
        "and growing lag are judged against the previous sample",
    )  # fmt: skip


def _dlq(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=["list", "redrive", "show"], metavar="list|redrive|show",
        help="list: dead-lettered messages by reason, with examples; redrive: send them back "
        "to their source topic, once (after a fix); show ADDRESS: one letter in full",
    )  # fmt: skip
    parser.add_argument(
        "address", nargs="?", metavar="ADDRESS",
        help="show only: a source message topic:partition:offset, as `list` prints it (its "
        "newest letter), or a letter's own T.dlq:partition:offset",
    )  # fmt: skip
    parser.add_argument(
        "--topic", metavar="T",
        help="a source topic or its .dlq topic (default: every source topic's)",
    )  # fmt: skip
    parser.add_argument(
        "--reason", metavar="R",
        help="only dead letters whose reason contains R, ignoring case (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--all", action="store_true",
        help="list: every dead-lettered message, not the first 5 of each reason",
    )  # fmt: skip


@dataclass(frozen=True)
class Command:
    """One `personas` command: what it does, its arguments, and the function that runs it."""

    summary: str
    arguments: Arguments
    handler: str  # "module:function", imported on use
    details: str = ""  # more for `personas COMMAND --help`

    @property
    def description(self) -> str:
        return f"{self.summary}\n\n{self.details}" if self.details else self.summary


COMMANDS: dict[str, Command] = {
    "run": Command(
        "run the workers (ingest, features, classifier, daily rebuild), /metrics and /health",
        _run, "streams.cli.run:command_run",
    ),
    "broker": Command(
        "run the embedded broker on its own, until SIGTERM or Ctrl-C (its topics live in memory)",
        _broker, "streams.cli.broker:command_broker",
        "Workers and commands started after it find it through the run file, so they can stop\n"
        "and start without losing a topic. Refused when a broker is configured or running.",
    ),
    "demo": Command(
        "run the whole pipeline on generated data and print a summary",
        _demo, "streams.cli.demo:command_demo",
    ),
    "generate": Command(
        "write synthetic trades with planted behaviours and their expected labels",
        _generate, "streams.cli.files:command_generate",
    ),
    "import": Command(
        "bulk-load trades (JSONL or CSV) into SQLite; bad rows reported by line, good rows kept",
        _import, "streams.cli.files:command_import",
    ),
    "features": Command(
        "compute and print one wallet's window (reads only)",
        _features, "streams.cli.wallet:command_features",
    ),
    "classify": Command(
        "explain a wallet's classification rule by rule, on the features.window_days window "
        "(reads only)",
        _classify, "streams.cli.wallet:command_classify",
        "Every rule is listed in table order with each condition's value, threshold and whether\n"
        "it holds. A rule fires when all its conditions hold. The first exclusion or pending\n"
        "check that fires decides (marked →); else the first persona that fires, unless LOW_ROI\n"
        "vetoes it.",
    ),
    "rebuild": Command(
        "run the authoritative daily rebuild now, or backfill past days (--from/--to)",
        _rebuild, "streams.cli.rebuild:command_rebuild",
        "A backfill rebuilds each day as of its last second, 23:59:59 UTC, and records it in the\n"
        "same transaction as its rows: days already done are skipped (unless --force), so a\n"
        "killed backfill resumes where it stopped. --dry-run shows the plan first.",
    ),
    "publish": Command(
        "produce discovery or trade events, all validated before the first send",
        _publish, "streams.cli.publish:command_publish",
    ),
    "replay": Command(
        "move a consumer group's offsets on a topic (backfill); --dry-run to preview",
        _replay, "streams.cli.replay:command_replay",
        "Stop the group's consumers first: a live member's next commit would undo the move.\n"
        "Replays are idempotent downstream: every write is an upsert.",
    ),
    "lag": Command(
        "consumer lag per group and partition, in messages and seconds, with a status",
        _lag, "streams.cli.lag:command_lag",
        "lag = log end − committed offset; LAG_S = age of the oldest unconsumed message.\n"
        "STATUS: OK, WARN (old or growing lag), STALL (no progress), STOP (lag, no live member),\n"
        "ERR (committed offset beyond the log end: the log was lost; replay the group).\n"
        "Exit status 0 whatever the lag: read STATUS, or /health on the worker.",
    ),
    "dlq": Command(
        "list dead letters by reason, show one, or re-drive them to their source topic",
        _dlq, "streams.cli.dlq:command_dlq",
        "A source message is listed once, however often it was re-driven and failed again:\n"
        "its newest letter, re-drive count and status (pending: not re-driven since it last\n"
        "failed; redriven: sent back, and not dead-lettered since).",
    ),
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The `personas` parser: one subcommand per row of `COMMANDS`, each with the common options."""
    parser = _Parser(
        prog="personas", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.summary, description=command.description, formatter_class=_Formatter
        )
        command.arguments(sub)
        _common(sub)
    return parser
