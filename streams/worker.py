"""The Faust worker with every agent, on the configured or an embedded broker (`personas run`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from contextlib import closing
from typing import Any

import faust

from agents.core.errors import WalletError
from agents.store import connect, migrate
from config.settings import Settings, load_settings
from streams.app import build_app
from streams.broker import broker_for
from streams.offset_guard import reset_lost_offsets
from streams.topics import ensure_topics

__all__ = ["prepare", "run_worker"]

log = logging.getLogger("personas.worker")

EXIT_SHUTDOWN_TIMEOUT = 75


class Worker(faust.Worker):
    """Faust's worker with a shutdown deadline.

    SIGTERM/SIGINT let the batch in flight finish, commit and leave the group. If that takes longer
    than `worker.shutdown_timeout_s`, the process exits anyway: nothing unfinished was
    committed, so the next worker redelivers it.
    """

    def __init__(self, app: faust.App, shutdown_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # Faust's startup spinner writes terminal escapes even into a log file; logs say enough.
        self.spinner = None
        self._deadline_s = shutdown_timeout
        self._deadline: threading.Timer | None = None

    async def stop(self) -> None:
        """Stop the app (agents finish their batch), then the feature processes and the store."""
        await super().stop()
        await self.app.personas_runtime.close()  # type: ignore[attr-defined]
        if self._deadline is not None:
            self._deadline.cancel()

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        log.info("%s received: finishing the batch in flight (deadline %.0fs)",
                 signum.name, self._deadline_s)  # fmt: skip
        if self._deadline is None:
            self._deadline = threading.Timer(self._deadline_s, self._past_deadline)
            self._deadline.daemon = True
            self._deadline.start()
        super()._schedule_shutdown(signum)

    def _past_deadline(self) -> None:
        log.error("shutdown exceeded %.0fs; exiting now (uncommitted work is redelivered)",
                  self._deadline_s)  # fmt: skip
        logging.shutdown()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)


def prepare(settings: Settings, bootstrap: str) -> None:
    """Create the topics and the database schema; safe to repeat."""
    asyncio.run(ensure_topics(bootstrap, settings))
    # A broker that lost its log: start those partitions over (policy in streams.offset_guard).
    asyncio.run(reset_lost_offsets(bootstrap, settings))
    with closing(connect(settings.database.url, settings.database.busy_timeout_ms)) as conn:
        migrate(conn)
    settings.data_dir.mkdir(parents=True, exist_ok=True)


def check_web_port(settings: Settings) -> None:
    """Fail in one line, naming the setting, when /metrics cannot get its port."""
    host, port = settings.worker.web_host, settings.worker.web_port
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise WalletError(
                f"cannot serve /metrics and /health on {host}:{port}: {exc.strerror} (another "
                "worker on this host?); give this one another worker.web_port, e.g. "
                "PERSONAS_WORKER__WEB_PORT=6067"
            ) from None


def run_worker(settings: Settings, *, rebuild: bool = True) -> int:
    """Run the worker until SIGTERM/SIGINT; return its exit status."""
    check_web_port(settings)
    with broker_for(settings) as bootstrap:
        prepare(settings, bootstrap)
        # asyncio.run() above closed its loop; Faust wants a current one.
        asyncio.set_event_loop(asyncio.new_event_loop())
        app = build_app(settings, bootstrap, rebuild=rebuild)
        log.info(
            "worker %s: broker %s, database %s, /metrics on http://%s:%d",
            settings.worker.app_id, bootstrap, settings.database.location,
            settings.worker.web_host, settings.worker.web_port,
        )  # fmt: skip
        worker = Worker(
            app,
            settings.worker.shutdown_timeout_s,
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


if __name__ == "__main__":
    sys.exit(run_worker(load_settings()))
