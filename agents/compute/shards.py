"""The rebuild's shards: a set of wallets read with two queries, computed at one or more as_ofs.

A shard is read once, up to its last as_of: its wallets' valid checkpoints, then each wallet's
trades from its checkpoint (or the longest window's start, if earlier) on, or its whole history
when it has none (`agents.store.checkpoints`), so the cost follows activity, not history. The
kernel gives each of its as_ofs (SPEC §9 backfills compute many days; the daily rebuild one) the
rows a full recomputation gives, and the checkpoint as of that day, written with the rows: the
windows of every wallet from one call of the compiled kernel (`agents.core.shard_kernel`), or,
in the fallback of a shard that failed, from the Python kernel (`wallet_features_since`) a wallet
at a time; both give the same bits. At an as_of a wallet gets rows only
if it has a trade in the longest window, as the daily rebuild's wallet query selects it. The
kernel keeps only the trades ≤ as_of and orders them itself, so a row computed from the read up to
a later day is bit-equal to one computed from a read up to its own day.

Shards run in this process (serial) or in a pool of reader processes, which read their trades as
Arrow columns through ADBC (`agents.store.arrow`), on a SQLite file with no sqlite3 connection of
their own. A shard that fails is recomputed here wallet by wallet on this process's connection, a
broken pool is replaced.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.compute.processes import arrow_store, reader, reader_pool
from agents.core.checkpoint import (
    EMPTY,
    Checkpoint,
    advance_sorted,
    lifetime_from,
    wallet_features_since,
)
from agents.core.features import (
    DAY,
    Fill,
    LifetimeStats,
    WindowFeatures,
    feature_date,
)
from agents.store import Connection
from agents.store.arrow import ArrowStore
from agents.store.checkpoints import checkpoint_row, checkpointed_columns

if TYPE_CHECKING:
    from agents.core.columns import FillColumns

__all__ = [
    "SOURCE",
    "ShardFunction",
    "ShardJob",
    "ShardResult",
    "compute_shard",
    "run_shards",
    "worker_shard",
]

log = logging.getLogger("personas.rebuild")

SOURCE = "batch"
# Shards queued per worker: enough to keep every process busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 2
# A pool that keeps dying is not worth restarting: the remaining shards then run serially.
MAX_POOL_RESTARTS = 2

_window_values = attrgetter(*(f.name for f in dataclasses.fields(WindowFeatures)))
_lifetime_values = attrgetter(*(f.name for f in dataclasses.fields(LifetimeStats)))


@dataclass(frozen=True)
class ShardJob:
    """One shard's work: its wallets (sorted), its as_ofs (oldest first) and the run's windows."""

    index: int
    wallets: tuple[str, ...]
    as_ofs: tuple[int, ...]
    windows: tuple[int, ...]
    computed_at: float

    @property
    def as_of(self) -> int:
        """The last as_of: the shard is read up to it."""
        return self.as_ofs[-1]


@dataclass
class ShardResult:
    """One shard's rows (in `FEATURE_ROW_KEYS` order), its wallet-days computed, and the
    (as_of, wallet) pairs that could not be computed."""

    index: int
    rows: list[tuple[Any, ...]]
    wallets: int
    failed: list[tuple[int, str]] = field(default_factory=list)
    fallback: bool = False
    #: each computed wallet's checkpoint as of its last as_of here (`checkpoint_row`s)
    checkpoints: list[tuple[Any, ...]] = field(default_factory=list)


def _rows(
    wallet: str,
    windows: dict[int, tuple[Any, ...]],
    lifetime: LifetimeStats,
    job: ShardJob,
    as_of: int,
) -> Iterator[tuple[Any, ...]]:
    lifetime_values = _lifetime_values(lifetime)
    date = feature_date(as_of)
    for days in job.windows:
        yield (wallet, date, days, as_of, SOURCE, job.computed_at, *windows[days], *lifetime_values)


@dataclass(frozen=True)
class _Read:
    """A shard as read: its valid checkpoints, its trades as columns, and each wallet's rows of
    them in canonical order (wallets in the job's order; those without trades left out)."""

    checkpoints: dict[str, Checkpoint]
    columns: FillColumns
    rows: dict[str, Sequence[int]]

    def stamps(self, wallet: str) -> list[int]:
        """The wallet's trade times, in order."""
        return self.columns.stamps_of(self.rows[wallet])

    def fills_between(self, wallet: str, after: int, upto: int) -> list[Fill]:
        """The wallet's fills with after < timestamp ≤ upto, in canonical order."""
        rows, stamps = self.rows[wallet], self.stamps(wallet)
        end = bisect_right(stamps, upto)
        return self.columns.fills(rows[bisect_right(stamps, after, hi=end) : end])


def _read(source: Connection | ArrowStore, job: ShardJob) -> _Read:
    """The shard's valid checkpoints (taken at or before its first as_of) and its wallets'
    trades: from the earlier of the longest window's start and the checkpoint on, or the whole
    history of a wallet without one. Two queries, whatever the number of wallets."""
    first = job.as_ofs[0]
    window_start = first - max(job.windows) * DAY
    needs = dict.fromkeys(job.wallets, (first, window_start))
    checkpoints, (columns, runs) = checkpointed_columns(source, needs, job.as_of)
    rows = columns.canonical_rows(runs)
    return _Read(checkpoints, columns, {w: rows[w] for w in job.wallets if w in rows})


def _by_as_of(job: ShardJob, read: _Read) -> Iterator[tuple[int, list[str]]]:
    """(as_of, the wallets active then) for each as_of of the job."""
    if len(job.as_ofs) == 1:
        # The daily rebuild: its wallets were chosen active at this as_of.
        yield job.as_of, list(read.rows)
        return
    shard = [(wallet, read.stamps(wallet)) for wallet in read.rows]
    span = max(job.windows) * DAY
    for as_of in job.as_ofs:
        # Active: a trade in [as_of − span, as_of], the daily rebuild's wallet query.
        yield (
            as_of,
            [
                wallet
                for wallet, stamps in shard
                if bisect_left(stamps, as_of - span) < bisect_right(stamps, as_of)
            ],
        )


class _CollectorPause:
    """The cyclic garbage collector off while shards are read and computed, on again after the
    last one running in this process (a lock and a count: threads may compute shards at once).

    A shard allocates millions of objects (rows, Fills, feature rows) and frees none of them until
    it is done, so the collector runs over and over and finds nothing: a third of a serial
    rebuild's time (issue 14's profile). None of them is in a reference cycle, so pausing the
    collector holds no memory that it would have freed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._enable_after = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._running:
                self._enable_after = gc.isenabled()
                gc.disable()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running and self._enable_after:
                    gc.enable()


_collector_paused = _CollectorPause()


def _compute(source: Connection | ArrowStore, job: ShardJob, *, fallback: bool) -> ShardResult:
    """Every wallet of the shard at each as_of through the kernel, from its checkpoint (carried
    from one as_of to the next). A fallback skips a wallet that fails; otherwise it raises."""
    with _collector_paused():
        return _compute_shard(source, job, fallback=fallback)


def _compute_shard(
    source: Connection | ArrowStore, job: ShardJob, *, fallback: bool
) -> ShardResult:
    result = ShardResult(job.index, [], 0, fallback=fallback)
    read = _read(source, job)
    computed: set[str] = set()
    kernel = _wallet_by_wallet if fallback else _all_at_once
    for as_of, wallet, computation in kernel(job, read):
        if isinstance(computation, Exception):
            log.error(
                "rebuild: cannot compute features of %s as of %d; skipped",
                wallet, as_of, exc_info=computation,
            )  # fmt: skip
            result.failed.append((as_of, wallet))
            continue
        # Stored where the kernel reads it at the wallet's next as_of (backfills' many days).
        windows, lifetime, read.checkpoints[wallet] = computation
        computed.add(wallet)
        result.rows.extend(_rows(wallet, windows, lifetime, job, as_of))
        result.wallets += 1
    result.checkpoints = [
        checkpoint_row(wallet, read.checkpoints[wallet], job.computed_at)
        for wallet in sorted(computed)
    ]
    return result


#: a wallet's windows (their feature values, in `WindowFeatures` field order), lifetime stats and
#: checkpoint, as of one as_of
Computation = tuple[dict[int, tuple[Any, ...]], LifetimeStats, Checkpoint]
Computed = Iterator[tuple[int, str, Computation | Exception]]


def _wallet_by_wallet(job: ShardJob, read: _Read) -> Computed:
    """The Python kernel a wallet at a time: a wallet that fails loses only itself."""
    fills = {wallet: read.columns.fills(rows) for wallet, rows in read.rows.items()}
    for as_of, wallets in _by_as_of(job, read):
        for wallet in wallets:
            try:
                windows, lifetime, after = wallet_features_since(
                    read.checkpoints.get(wallet, EMPTY), fills[wallet], as_of, job.windows
                )
            except Exception as exc:  # reported and skipped by the caller
                yield as_of, wallet, exc
                continue
            values = {days: _window_values(features) for days, features in windows.items()}
            yield as_of, wallet, (values, lifetime, after)


def _all_at_once(job: ShardJob, read: _Read) -> Computed:
    """Every window of the shard from the compiled kernel in one call, bit-equal to the Python
    kernel's; then each wallet's checkpoint advanced by its fills since. Raises on any failure."""
    # Here, not at the top: numba loads (≈ 0.25 s, ≈ 50 MB) only in processes that compute shards.
    from agents.core.shard_kernel import windows_of_columns

    by_as_of = list(_by_as_of(job, read))
    as_ofs: dict[str, list[int]] = {}
    for as_of, wallets in by_as_of:
        for wallet in wallets:
            as_ofs.setdefault(wallet, []).append(as_of)
    windows = windows_of_columns(
        read.columns, [(read.rows[w], days) for w, days in as_ofs.items()], job.windows
    )
    pending = {wallet: iter(per_as_of) for wallet, per_as_of in zip(as_ofs, windows, strict=True)}
    for as_of, wallets in by_as_of:
        for wallet in wallets:
            checkpoint = read.checkpoints.get(wallet, EMPTY)
            since = read.fills_between(wallet, checkpoint.as_of, as_of)
            after = advance_sorted(checkpoint, since, as_of)
            yield as_of, wallet, (next(pending[wallet]), lifetime_from(after), after)


def compute_shard(source: Connection | ArrowStore, job: ShardJob) -> ShardResult:
    """Every wallet of the shard through the kernel, read on a connection or through ADBC (on a
    SQLite file, in a process that has no sqlite3 connection); raises on any failure."""
    return _compute(source, job, fallback=False)


def _compute_shard_per_wallet(conn: Connection, job: ShardJob) -> ShardResult:
    """The fallback: the kernel wallet by wallet, so one bad wallet loses only itself."""
    return _compute(conn, job, fallback=True)


def _fallback(conn: Connection, job: ShardJob, error: BaseException) -> ShardResult:
    wallets = job.wallets
    log.warning(
        "rebuild: shard %d failed (%r); computing its %d wallets (%s … %s) serially",
        job.index, error, len(wallets), wallets[0], wallets[-1],
    )  # fmt: skip
    log.debug("rebuild: wallets of shard %d: %s", job.index, ", ".join(wallets))
    return _compute_shard_per_wallet(conn, job)


def _serial(conn: Connection, job: ShardJob) -> ShardResult:
    try:
        return compute_shard(conn, job)
    except Exception as exc:
        return _fallback(conn, job, exc)


def worker_shard(job: ShardJob) -> ShardResult:
    """The computation in a reader process: as Arrow columns if it reads so, else on its own
    connection."""
    return compute_shard(arrow_store() or reader(), job)


ShardFunction = Callable[[ShardJob], ShardResult]


@dataclass(frozen=True)
class _Pool:
    database: Path | str
    busy_timeout_ms: int
    workers: int


def _parallel(
    conn: Connection,
    pool_options: _Pool,
    jobs: Sequence[ShardJob],
    done: Callable[[ShardResult], None],
    shard_function: ShardFunction,
) -> None:
    """Run jobs on a process pool; a failed shard runs serially here, a broken pool is replaced."""
    pending = deque(jobs)
    workers = pool_options.workers
    restarts = 0
    while pending:
        if restarts > MAX_POOL_RESTARTS:
            log.warning(
                "rebuild: pool failed %d times; %d shards run serially", restarts, len(pending)
            )
            while pending:
                done(_serial(conn, pending.popleft()))
            return
        pool = reader_pool(
            pool_options.database, pool_options.busy_timeout_ms, min(workers, len(pending)),
            arrow=True,
        )  # fmt: skip
        broken = False
        in_flight: dict[Future[ShardResult], ShardJob] = {}
        try:
            while in_flight or (pending and not broken):
                while pending and not broken and len(in_flight) < workers * IN_FLIGHT_PER_WORKER:
                    job = pending.popleft()
                    try:
                        in_flight[pool.submit(shard_function, job)] = job
                    except BrokenProcessPool:
                        pending.appendleft(job)
                        broken = True
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = in_flight.pop(future)
                    try:
                        done(future.result())
                    except Exception as exc:
                        # A dead process breaks the whole pool: every shard in flight lands here.
                        broken = broken or isinstance(exc, BrokenProcessPool)
                        done(_fallback(conn, job, exc))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            restarts += 1


def run_shards(
    conn: Connection,
    database: Path | str,
    jobs: Sequence[ShardJob],
    *,
    parallel: bool,
    workers: int,
    busy_timeout_ms: int,
    on_shard: Callable[[ShardResult], None] | None = None,
    shard_function: ShardFunction = worker_shard,
) -> tuple[list[ShardResult], int]:
    """Every job's result, in job order, and the worker processes used (0: serial).

    `on_shard(result)` is called as each shard finishes; `shard_function` is the worker-side
    computation (tests swap in one that fails). Serial runs compute here, on `conn`.
    """
    by_index: dict[int, ShardResult] = {}

    def done(shard: ShardResult) -> None:
        by_index[shard.index] = shard
        if on_shard is not None:
            on_shard(shard)

    used = workers if parallel and workers > 1 and len(jobs) > 1 else 0
    if used:
        _parallel(conn, _Pool(database, busy_timeout_ms, workers), jobs, done, shard_function)
    else:
        for job in jobs:
            done(_serial(conn, job))
    return [by_index[job.index] for job in jobs], used
