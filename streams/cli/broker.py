"""`personas broker [--port N]`: the embedded broker on its own, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.core.errors import InvalidMessage
from config.settings import load_settings
from streams.broker import serve_broker
from streams.cli.output import emit_json
from streams.cli.status import EXIT_OK

__all__ = ["MAX_PORT", "command_broker"]

MAX_PORT = 65_535


def command_broker(args: argparse.Namespace) -> int:
    """Serve the broker; workers and commands started after it find it through the run file."""
    if not 0 <= args.port <= MAX_PORT:
        raise InvalidMessage("--port", f"must be a TCP port, 0 to {MAX_PORT} (got {args.port})")
    settings = load_settings(args.config)

    def ready(bootstrap: str, run_file: Path) -> None:
        if args.json:
            emit_json({"bootstrap": bootstrap, "run_file": str(run_file)})
            return
        print(
            f"broker listening on {bootstrap} (run file {run_file})\n"
            "  personas run, rebuild, publish, replay, lag and dlq find it there; Ctrl-C stops "
            "it, and with it every topic (it keeps them in memory)",
            file=sys.stderr,
            flush=True,
        )

    serve_broker(settings, args.port, ready)
    if not args.json:
        print("broker stopped", file=sys.stderr)
    return EXIT_OK
