"""Reader processes: a forkserver pool whose processes each hold a read-only connection.

Both the on-demand features and the rebuild's shards compute in such a pool, beside the event
loop; WAL readers never block the writer, nor each other.

The processes leave stopping to their worker, and end when it is gone.

Pool processes are forked by the forkserver, not by the worker, and they block on their task
queue, which they hold both ends of: when the worker is killed (SIGKILL, out of memory) nothing
tells them, and they would live on, each with a database connection. A daemon thread in each one
checks the worker every second and ends the process once it has disappeared.

They share the worker's terminal, so Ctrl-C reaches them too; they ignore it, and the worker,
which finishes its batch in flight first, shuts them down.

The rebuild's processes read the store through ADBC (`agents.store.arrow`), and on a SQLite file
open no sqlite3 connection: two copies of SQLite must never have the same file open in one
process, as closing a file in one drops the other's locks on it (SQLite's "How To Corrupt").
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from agents.store import Connection, open_reader
from agents.store.arrow import ArrowStore

__all__ = ["arrow_store", "exit_with", "reader", "reader_pool", "serve"]

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


# The pool process's read-only connection (or store read through ADBC), set up once by the
# pool's initializer.
_reader: Connection | ArrowStore | None = None


def _open_reader(location: str, busy_timeout_ms: int, worker_pid: int, arrow: bool) -> None:
    global _reader
    serve(worker_pid)
    if arrow:
        _reader = ArrowStore(location, busy_timeout_ms)
    else:
        _reader = open_reader(location, busy_timeout_ms)


def reader() -> Connection:
    """This pool process's read-only connection."""
    assert _reader is not None and not isinstance(_reader, ArrowStore), "not a reader process"
    return _reader


def arrow_store() -> ArrowStore | None:
    """This pool process's store, if it reads it through ADBC."""
    return _reader if isinstance(_reader, ArrowStore) else None


def reader_pool(
    database: Path | str, busy_timeout_ms: int, processes: int, *, arrow: bool = False
) -> ProcessPoolExecutor:
    """`processes` reader processes on `database` that end with this process; with `arrow`, they
    read it through ADBC (`agents.store.arrow`) only."""
    # forkserver: children never fork this (possibly multi-threaded, event-looped) process.
    return ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_open_reader,
        initargs=(str(database), busy_timeout_ms, os.getpid(), arrow),
    )
