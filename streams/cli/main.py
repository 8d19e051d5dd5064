"""`personas`: parse the command line, run the command, turn its errors into exit statuses.

The commands, their options and their handlers are listed in `streams.cli.parser.COMMANDS`.
Exit 0 on success, 2 on bad usage or input, 1 otherwise (`streams.cli.status`, SPEC §11).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import cast

from streams.cli.parser import COMMANDS, build_parser
from streams.cli.status import EXIT_INTERRUPTED, EXIT_OK

__all__ = ["build_parser", "main"]

log = logging.getLogger("personas")

Handler = Callable[[argparse.Namespace], int]

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _handler(name: str) -> Handler:
    # Imported on use so that `personas --help` and light commands start fast.
    module, function = COMMANDS[name].handler.split(":")
    return cast(Handler, getattr(importlib.import_module(module), function))


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
    # Past parsing: `--help` never pays for pydantic and the settings.
    from agents.core.errors import WalletError
    from config.settings import ConfigError

    try:
        return _handler(args.command)(args)
    except (WalletError, ConfigError) as exc:
        print(f"personas {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"personas {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader stopped early (`personas dlq list | head`): end quietly, with the status a
        # program killed by SIGPIPE has. Python would complain again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
