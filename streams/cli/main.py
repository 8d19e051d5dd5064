"""`personas`: the command line (SPEC §11). Exit 0 on success, 2 on bad usage or input, else 1."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.core.errors import WalletError
from config.settings import ConfigError

__all__ = ["main"]

log = logging.getLogger("personas")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"personas: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML file over the defaults")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="personas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub)
        return sub

    run = command("run", "run the workers: ingest, features, classifier, daily rebuild; /metrics")
    run.add_argument("--no-rebuild", action="store_true", help="do not schedule the daily rebuild")

    demo = command("demo", "run the whole pipeline on generated data and print a summary")
    demo.add_argument("--wallets", type=int, default=3000)
    demo.add_argument("--days", type=int, default=90)
    demo.add_argument("--seed", type=int, default=7)

    generate = command("generate", "write synthetic trades with planted behaviours and labels")
    generate.add_argument("--wallets", type=int, required=True)
    generate.add_argument("--days", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--end", metavar="T", help="the data's as_of (epoch or ISO-8601 UTC)")
    generate.add_argument("--out", type=Path, required=True, metavar="F", help="trades JSONL")

    imp = command("import", "bulk-load trades (JSONL or CSV) into SQLite")
    imp.add_argument("kind", choices=["trades"])
    imp.add_argument("file", type=Path)
    imp.add_argument("--markets", type=Path, metavar="F", help="markets JSONL or CSV")

    features = command("features", "compute and print one wallet's window (reads only)")
    features.add_argument("wallet")
    features.add_argument("--window", type=int, default=30)
    features.add_argument("--as-of", metavar="T")

    classify = command("classify", "explain a wallet's classification rule by rule (reads only)")
    classify.add_argument("wallet")
    classify.add_argument("--as-of", metavar="T")

    rebuild = command("rebuild", "run the authoritative daily rebuild now")
    rebuild.add_argument("--as-of", metavar="T")
    rebuild.add_argument("--no-publish", action="store_true", help="write features only")

    publish = command("publish", "produce discovery or trade events (validated before sending)")
    publish.add_argument("kind", choices=["discovered", "trades"])
    publish.add_argument("wallets", nargs="*", metavar="WALLET", help="wallets (discovered only)")
    publish.add_argument("--file", type=Path, metavar="F", help="JSONL or CSV of events")
    publish.add_argument("--rate", type=float, metavar="N", help="at most N messages per second")
    publish.add_argument("--source", default="cli", help="discovery source (default: cli)")

    replay = command("replay", "move a consumer group's offsets (backfill); --dry-run to preview")
    replay.add_argument("--group", required=True, metavar="G")
    replay.add_argument("--topic", required=True, metavar="T")
    replay.add_argument(
        "--to", required=True, metavar="WHERE", help="earliest|latest|DATETIME|offset:N|shift:N"
    )
    replay.add_argument("--partition", type=int, action="append", metavar="P")
    replay.add_argument("--dry-run", action="store_true", help="show the moves, change nothing")
    replay.add_argument("--force", action="store_true", help="even while the group has members")

    lag = command("lag", "consumer lag per group and partition, in messages and seconds")
    lag.add_argument("--group", metavar="G", action="append")
    lag.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="S")

    dlq = command("dlq", "inspect and re-drive dead letters")
    dlq.add_argument("action", choices=["list", "redrive"])
    dlq.add_argument("--topic", metavar="T", help="source topic (default: all)")
    dlq.add_argument("--reason", metavar="R", help="only dead letters whose reason contains R")

    return parser


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    # Imported on use so that `personas --help` and light commands start fast.
    if name == "run":
        from streams.worker import command_run

        return command_run
    if name == "demo":
        from streams.demo import command_demo

        return command_demo
    if name == "generate":
        from streams.cli.files import command_generate

        return command_generate
    if name == "import":
        from streams.cli.files import command_import

        return command_import
    if name in ("features", "classify"):
        from streams.cli.files import command_classify, command_features

        return command_features if name == "features" else command_classify
    if name == "rebuild":
        from streams.cli.rebuild import command_rebuild

        return command_rebuild
    if name == "publish":
        from streams.ops.publish import command_publish

        return command_publish
    if name == "replay":
        from streams.ops.replay import command_replay

        return command_replay
    if name == "lag":
        from streams.ops.lag import command_lag

        return command_lag
    if name == "dlq":
        from streams.ops.dlq import command_dlq

        return command_dlq
    raise AssertionError(name)


def _stop_before_start(signum: int, frame: object) -> None:
    log.info("SIGTERM during startup: stopping before consuming anything")
    broker = sys.modules.get("streams.broker")
    if broker is None or not broker.started_brokers():
        # Nothing to clean up yet: exit at once instead of unwinding whatever import this
        # interrupted (unwinding a half-imported extension module once ended in SIGSEGV).
        logging.shutdown()
        os._exit(EXIT_OK)
    raise SystemExit(EXIT_OK)  # unwind, so the embedded broker is stopped


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `personas` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "run":
        # Until Faust installs its own handlers, SIGTERM stops the worker cleanly: nothing has
        # been consumed yet. Without this, a stop during startup killed it (status -15).
        signal.signal(signal.SIGTERM, _stop_before_start)
    try:
        return _handler(args.command)(args)
    except (WalletError, ConfigError) as exc:
        print(f"personas {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"personas {args.command}: interrupted", file=sys.stderr)
        return 130
