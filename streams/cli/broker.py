"""`personas broker [--port N]`: the embedded broker on its own, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config.settings import load_settings
from streams.broker import serve_broker
from streams.cli.output import emit_json

__all__ = ["command_broker"]


def command_broker(args: argparse.Namespace) -> int:
    """Serve the broker; workers and commands started after it find it through the run file."""
    settings = load_settings(args.config)

    def ready(bootstrap: str, run_file: Path) -> None:
        if args.json:
            emit_json({"bootstrap": bootstrap, "run_file": str(run_file)})
            return
        print(
            f"broker listening on {bootstrap} (run file {run_file})\n"
            "  personas run, publish, replay, lag and dlq find it there; Ctrl-C stops it, and "
            "with it every topic (it keeps them in memory)",
            file=sys.stderr,
            flush=True,
        )

    serve_broker(settings, args.port, ready)
    if not args.json:
        print("broker stopped", file=sys.stderr)
    return 0
