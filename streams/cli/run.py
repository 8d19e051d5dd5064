"""`personas run [--no-rebuild]`: the worker with every agent, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from config.settings import load_settings
from streams.worker import run_worker

__all__ = ["command_run"]


def command_run(args: argparse.Namespace) -> int:
    """Run the worker; its exit status is the command's (75 when shutdown overran its deadline)."""
    settings = load_settings(args.config)
    return run_worker(settings, rebuild=not args.no_rebuild)
