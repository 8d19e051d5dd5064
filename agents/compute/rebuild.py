"""The authoritative daily rebuild (SPEC §9): set-based reads, shards over processes, bulk write.

One query lists the wallets with a trade in the longest window; they are cut into shards of
`shard_wallets`. Each shard is read with a single query (every trade ≤ as_of of its wallets, in
wallet order, because lifetime stats need the whole history) and fed to the core's
`many_wallet_features`, in this process (serial) or in a pool of worker processes, each with its
own read-only connection. Rows come back to the parent, which upserts all of them `source=batch`
in one transaction. Nothing is written before that commit, so an interrupted run leaves no trace
and a re-run with the same as_of writes the same rows.

Faust-free on purpose: `personas rebuild` and the crontab agent both call `run_rebuild`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.compute.processes import reader, reader_pool
from agents.core.features import (
    DAY,
    WINDOWS,
    LifetimeStats,
    WindowFeatures,
    feature_date,
    many_wallet_features,
    wallet_features,
)
from agents.retry import backoff, is_transient
from agents.store import connect, fills_by_wallet, migrate, upsert_feature_rows
from agents.store.schema import FEATURE_ROW_KEYS

if TYPE_CHECKING:
    from agents.core.records import FeatureSet
    from config.settings import Settings

__all__ = [
    "RebuildOptions",
    "RebuildResult",
    "ShardJob",
    "ShardResult",
    "active_wallets",
    "compute_shard",
    "feature_set_from_row",
    "options_from_settings",
    "run_rebuild",
]

log = logging.getLogger("personas.rebuild")

SOURCE = "batch"
# Shards queued per worker: enough to keep every process busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 2
# A pool that keeps dying is not worth restarting: the remaining shards then run serially.
MAX_POOL_RESTARTS = 2
WRITE_ATTEMPTS = 5
WRITE_FIRST_RETRY_S = 0.5

# The covering (proxy_wallet, timestamp) index answers this without touching the table, already
# in wallet order; left to itself the planner picks the timestamp index and a table lookup per
# trade, ~20× slower.
ACTIVE_WALLETS_SQL = """
SELECT DISTINCT proxy_wallet FROM trades INDEXED BY trades_wallet_time
WHERE timestamp BETWEEN ? AND ? ORDER BY proxy_wallet"""

_window_values = attrgetter(*(f.name for f in dataclasses.fields(WindowFeatures)))
_lifetime_values = attrgetter(*(f.name for f in dataclasses.fields(LifetimeStats)))


@dataclass(frozen=True)
class RebuildOptions:
    """What one rebuild computes and how: one as_of for every wallet and window."""

    as_of: int
    windows: tuple[int, ...] = WINDOWS
    parallel: bool = True
    workers: int = 1
    shard_wallets: int = 2000
    busy_timeout_ms: int = 10_000
    #: the 30-day window kept in the result for publishing (SPEC §9)
    publish_window: int = 30
    #: one timestamp for the whole run; None → the run's start
    computed_at: float | None = None

    def __post_init__(self) -> None:
        if self.publish_window not in self.windows:
            raise ValueError(f"publish window {self.publish_window} not in {self.windows}")
        if self.shard_wallets < 1 or self.workers < 1:
            raise ValueError("shard_wallets and workers must be ≥ 1")


@dataclass(frozen=True)
class ShardJob:
    """One shard's work: its wallets (sorted) and the run's parameters."""

    index: int
    wallets: tuple[str, ...]
    as_of: int
    windows: tuple[int, ...]
    computed_at: float


@dataclass
class ShardResult:
    """One shard's rows (in `FEATURE_ROW_KEYS` order) and the wallets that could not be computed."""

    index: int
    rows: list[tuple[Any, ...]]
    wallets: int
    failed: list[str] = field(default_factory=list)
    fallback: bool = False


@dataclass
class RebuildResult:
    """What a rebuild did; `publish_rows` are the rows of the window to publish, one per wallet."""

    as_of: int
    feature_date: str
    wallets: int = 0
    rows_written: int = 0
    shards: int = 0
    workers: int = 0
    fallback_shards: list[int] = field(default_factory=list)
    failed_wallets: list[str] = field(default_factory=list)
    read_compute_s: float = 0.0
    write_s: float = 0.0
    published: int = 0
    publish_s: float = 0.0
    duration_s: float = 0.0
    publish_rows: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (`--json`, logs)."""
        rate = self.wallets / self.duration_s if self.duration_s > 0 else 0.0
        return {
            "as_of": self.as_of,
            "feature_date": self.feature_date,
            "wallets": self.wallets,
            "rows_written": self.rows_written,
            "published": self.published,
            "shards": self.shards,
            "workers": self.workers,
            "fallback_shards": self.fallback_shards,
            "failed_wallets": self.failed_wallets,
            "duration_s": round(self.duration_s, 3),
            "wallets_per_s": round(rate, 1),
            "phases_s": {
                "read_compute": round(self.read_compute_s, 3),
                "write": round(self.write_s, 3),
                "publish": round(self.publish_s, 3),
            },
        }


def options_from_settings(
    settings: Settings, as_of: int, computed_at: float | None = None
) -> RebuildOptions:
    """RebuildOptions from the `[rebuild]`, `[features]` and `[database]` settings."""
    rebuild = settings.rebuild
    publish_window = settings.features.window_days
    return RebuildOptions(
        as_of=as_of,
        windows=tuple(sorted({*WINDOWS, publish_window})),
        parallel=rebuild.parallel_enabled,
        workers=rebuild.worker_count,
        shard_wallets=rebuild.shard_wallets,
        busy_timeout_ms=settings.database.busy_timeout_ms,
        publish_window=publish_window,
        computed_at=computed_at,
    )


def active_wallets(conn: sqlite3.Connection, as_of: int, days: int) -> list[str]:
    """Wallets with a trade in [as_of − days·86400, as_of] (the SPEC §3 window), sorted."""
    rows = conn.execute(ACTIVE_WALLETS_SQL, (as_of - days * DAY, as_of))
    return [wallet for (wallet,) in rows]


def _rows(
    wallet: str,
    windows: dict[int, WindowFeatures],
    lifetime: LifetimeStats,
    job: ShardJob,
    date: str,
) -> Iterator[tuple[Any, ...]]:
    lifetime_values = _lifetime_values(lifetime)
    for days in job.windows:
        head = (wallet, date, days, job.as_of, SOURCE, job.computed_at)
        yield head + _window_values(windows[days]) + lifetime_values


def compute_shard(conn: sqlite3.Connection, job: ShardJob) -> ShardResult:
    """Every wallet of the shard through `many_wallet_features`; raises on any failure."""
    date = feature_date(job.as_of)
    rows: list[tuple[Any, ...]] = []
    wallets = 0
    for wallet, windows, lifetime in many_wallet_features(
        fills_by_wallet(conn, job.wallets, job.as_of), job.as_of, job.windows
    ):
        rows.extend(_rows(wallet, windows, lifetime, job, date))
        wallets += 1
    return ShardResult(job.index, rows, wallets)


def _compute_shard_per_wallet(conn: sqlite3.Connection, job: ShardJob) -> ShardResult:
    """The fallback: the kernel wallet by wallet, so one bad wallet loses only itself."""
    date = feature_date(job.as_of)
    result = ShardResult(job.index, [], 0, fallback=True)
    for wallet, fills in fills_by_wallet(conn, job.wallets, job.as_of):
        try:
            windows, lifetime = wallet_features(fills, job.as_of, job.windows)
        except Exception:
            log.exception("rebuild: cannot compute features of %s; skipped", wallet)
            result.failed.append(wallet)
            continue
        result.rows.extend(_rows(wallet, windows, lifetime, job, date))
        result.wallets += 1
    return result


def _fallback(conn: sqlite3.Connection, job: ShardJob, error: BaseException) -> ShardResult:
    wallets = job.wallets
    log.warning(
        "rebuild: shard %d failed (%r); computing its %d wallets (%s … %s) serially",
        job.index, error, len(wallets), wallets[0], wallets[-1],
    )  # fmt: skip
    log.debug("rebuild: wallets of shard %d: %s", job.index, ", ".join(wallets))
    return _compute_shard_per_wallet(conn, job)


def _serial(conn: sqlite3.Connection, job: ShardJob) -> ShardResult:
    try:
        return compute_shard(conn, job)
    except Exception as exc:
        return _fallback(conn, job, exc)


def _worker_shard(job: ShardJob) -> ShardResult:
    return compute_shard(reader(), job)


ShardFunction = Callable[[ShardJob], ShardResult]


def _parallel(
    conn: sqlite3.Connection,
    db_path: Path,
    jobs: Sequence[ShardJob],
    options: RebuildOptions,
    done: Callable[[ShardResult], None],
    shard_function: ShardFunction,
) -> None:
    """Run jobs on a process pool; a failed shard runs serially here, a broken pool is replaced."""
    pending = deque(jobs)
    restarts = 0
    while pending:
        if restarts > MAX_POOL_RESTARTS:
            log.warning(
                "rebuild: pool failed %d times; %d shards run serially", restarts, len(pending)
            )
            while pending:
                done(_serial(conn, pending.popleft()))
            return
        pool = reader_pool(db_path, options.busy_timeout_ms, min(options.workers, len(pending)))
        broken = False
        in_flight: dict[Future[ShardResult], ShardJob] = {}
        try:
            while in_flight or (pending and not broken):
                while (
                    pending
                    and not broken
                    and len(in_flight) < options.workers * IN_FLIGHT_PER_WORKER
                ):
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


def run_rebuild(
    db_path: Path | str,
    options: RebuildOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    shard_function: ShardFunction = _worker_shard,
) -> RebuildResult:
    """Compute every active wallet's windows and upsert them `source=batch` in one transaction.

    `progress(done, total)` is called with wallets done after each shard. `shard_function` is the
    worker-side computation (tests swap in one that fails).
    """
    started = time.perf_counter()
    db_path = Path(db_path)
    computed_at = time.time() if options.computed_at is None else options.computed_at
    result = RebuildResult(options.as_of, feature_date(options.as_of))
    with closing(connect(db_path, options.busy_timeout_ms)) as conn:
        migrate(conn)
        wallets = active_wallets(conn, options.as_of, max(options.windows))
        size = options.shard_wallets
        jobs = [
            ShardJob(
                n, tuple(wallets[start : start + size]), options.as_of, options.windows, computed_at
            )
            for n, start in enumerate(range(0, len(wallets), size))
        ]
        result.shards = len(jobs)
        parallel = options.parallel and options.workers > 1 and len(jobs) > 1
        result.workers = options.workers if parallel else 0
        by_shard: dict[int, ShardResult] = {}

        def done(shard: ShardResult) -> None:
            by_shard[shard.index] = shard
            result.wallets += shard.wallets
            if progress is not None:
                progress(result.wallets, len(wallets))

        if parallel:
            _parallel(conn, db_path, jobs, options, done, shard_function)
        else:
            for job in jobs:
                done(_serial(conn, job))
        shards = [by_shard[n] for n in range(len(jobs))]
        result.read_compute_s = time.perf_counter() - started
        result.fallback_shards = [shard.index for shard in shards if shard.fallback]
        result.failed_wallets = [wallet for shard in shards for wallet in shard.failed]

        write_started = time.perf_counter()
        result.rows_written = _write(conn, itertools.chain.from_iterable(s.rows for s in shards))
        result.write_s = time.perf_counter() - write_started
    result.publish_rows = [
        row for shard in shards for row in shard.rows if row[2] == options.publish_window
    ]
    result.duration_s = time.perf_counter() - started
    return result


def _write(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """One upsert transaction; a lock held past the busy timeout is retried with backoff."""
    pending = list(rows) if not isinstance(rows, list) else rows
    for attempt, delay in enumerate(backoff(WRITE_FIRST_RETRY_S, most=8.0), start=1):
        try:
            return upsert_feature_rows(conn, pending)
        except sqlite3.OperationalError as exc:
            if attempt == WRITE_ATTEMPTS or not is_transient(exc):
                raise
            log.warning("rebuild: database busy (%s), retrying the write in %.1fs", exc, delay)
            time.sleep(delay)
    raise AssertionError("backoff never ends")


def feature_set_from_row(row: Sequence[Any]) -> FeatureSet:
    """The FeatureSet a `wallet_features` row carries (no re-validation: the core made it)."""
    from agents.core.records import FeatureSet

    return FeatureSet.model_construct(**dict(zip(FEATURE_ROW_KEYS, row, strict=True)))
