"""Pool processes that leave stopping to their worker, and end when it is gone.

Pool processes are forked by the forkserver, not by the worker, and they block on their task
queue, which they hold both ends of: when the worker is killed (SIGKILL, out of memory) nothing
tells them, and they would live on, each with a database connection. A daemon thread in each one
checks the worker every second and ends the process once it has disappeared.

They share the worker's terminal, so Ctrl-C reaches them too; they ignore it, and the worker,
which finishes its batch in flight first, shuts them down.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["exit_with", "serve"]

CHECK_INTERVAL_S = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused)
        return False
    return True


def _watch(pid: int, interval: float) -> None:
    while _alive(pid):
        time.sleep(interval)
    os._exit(0)


def exit_with(pid: int, interval: float = CHECK_INTERVAL_S) -> None:
    """End this process soon after process `pid` is gone (call from a pool initializer)."""
    threading.Thread(target=_watch, args=(pid, interval), name="parent-watch", daemon=True).start()


def serve(worker_pid: int) -> None:
    """Set up a pool process (from its initializer): ignore Ctrl-C, end with the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with(worker_pid)
