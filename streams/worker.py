"""`personas run`: the Faust worker with every agent, on the configured or an embedded broker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import closing

import faust

from agents.store import connect, migrate
from config.settings import Settings, load_settings
from streams.app import build_app
from streams.broker import broker_for
from streams.topics import ensure_topics

__all__ = ["command_run", "prepare", "run_worker"]

log = logging.getLogger("personas.worker")


def prepare(settings: Settings, bootstrap: str) -> None:
    """Create the topics and the database schema; safe to repeat."""
    asyncio.run(ensure_topics(bootstrap, settings))
    with closing(connect(settings.database.path, settings.database.busy_timeout_ms)) as conn:
        migrate(conn)


def run_worker(settings: Settings, *, rebuild: bool = True) -> int:
    """Run the worker until SIGTERM/SIGINT; return its exit status."""
    with broker_for(settings) as bootstrap:
        prepare(settings, bootstrap)
        # asyncio.run() above closed its loop; Faust wants a current one.
        asyncio.set_event_loop(asyncio.new_event_loop())
        app = build_app(settings, bootstrap, rebuild=rebuild)
        log.info(
            "worker %s: broker %s, database %s, /metrics on http://%s:%d",
            settings.worker.app_id, bootstrap, settings.database.path,
            settings.worker.web_host, settings.worker.web_port,
        )  # fmt: skip
        worker = faust.Worker(
            app,
            loglevel="INFO",
            override_logging=False,
            quiet=True,
            redirect_stdouts=False,
        )
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def command_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    return run_worker(settings, rebuild=not args.no_rebuild)


if __name__ == "__main__":
    sys.exit(run_worker(load_settings()))
