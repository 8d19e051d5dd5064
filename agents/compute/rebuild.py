"""The authoritative daily rebuild (SPEC §9): set-based reads, shards over processes, bulk write.

One query lists the wallets with a trade in the longest window; they are cut into shards of
`shard_wallets`. Each shard is read from its wallets' checkpoints on (the lifetime sums and open
lots as of the last rebuild, plus the trades since) and computed in this process (serial) or in a
pool of worker processes, each with its own read-only connection (`agents.compute.shards`). Rows
and new checkpoints come back to the parent, which upserts all of them (rows `source=batch`) in
one transaction, together with the day's line in `rebuild_runs`.
Nothing is written before that commit, so an interrupted run leaves no trace and a re-run with the
same as_of writes the same rows. Backfills of past days (`agents.compute.backfill`) share it all.

Faust-free on purpose: `personas rebuild` and the crontab agent both call `run_rebuild`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.compute.shards import (
    ShardFunction,
    ShardJob,
    ShardResult,
    compute_shard,
    run_shards,
    worker_shard,
)
from agents.compute.skew import Skew, measure_skew
from agents.core.features import DAY, WINDOWS, feature_date
from agents.retry import backoff, is_transient
from agents.store import Connection, connect, migrate
from agents.store.runs import RebuildRun, write_rebuild
from agents.store.schema import FEATURE_ROW_KEYS

if TYPE_CHECKING:
    from agents.core.records import FeatureSet
    from config.settings import RuleSettings, Settings

__all__ = [
    "ACTIVE_WALLETS_SQL",
    "AS_OF_COLUMN",
    "WINDOW_DAYS_COLUMN",
    "RebuildOptions",
    "RebuildResult",
    "ShardJob",
    "ShardResult",
    "active_wallets",
    "compute_shard",
    "feature_set_from_row",
    "options_from_settings",
    "run_rebuild",
    "shard_jobs",
    "write_rows",
]

log = logging.getLogger("personas.rebuild")

WRITE_ATTEMPTS = 5
WRITE_FIRST_RETRY_S = 0.5

# Where a `wallet_features` row (`FEATURE_ROW_KEYS` order) holds its window and its as_of.
WINDOW_DAYS_COLUMN = FEATURE_ROW_KEYS.index("window_days")
AS_OF_COLUMN = FEATURE_ROW_KEYS.index("as_of")

# The covering (proxy_wallet, timestamp) index answers this without touching the table, already
# in wallet order; left to itself the planner picks the timestamp index and a table lookup per
# trade, which is far slower.
ACTIVE_WALLETS_SQL = """
SELECT DISTINCT proxy_wallet FROM trades INDEXED BY trades_wallet_time
WHERE timestamp BETWEEN ? AND ? ORDER BY proxy_wallet"""


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
    #: the rules to compare classifications with in the skew report; None → no skew report
    skew_rules: RuleSettings | None = None

    def __post_init__(self) -> None:
        if self.publish_window not in self.windows:
            raise ValueError(f"publish window {self.publish_window} not in {self.windows}")
        if self.shard_wallets < 1 or self.workers < 1:
            raise ValueError("shard_wallets and workers must be ≥ 1")


@dataclass
class RebuildResult:
    """What a rebuild did; `rows_to_publish` are the publish window's rows, one per wallet."""

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
    rows_to_publish: list[tuple[Any, ...]] = field(default_factory=list, repr=False)
    #: the day's on-demand rows against their recomputation (`agents.compute.skew`)
    skew: Skew | None = None

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
            "skew": None if self.skew is None else self.skew.as_dict(),
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
        skew_rules=settings.rules,
    )


def active_wallets(conn: Connection, as_of: int, days: int) -> list[str]:
    """Wallets with a trade in [as_of − days·86400, as_of] (the SPEC §3 window), sorted."""
    rows = conn.execute(ACTIVE_WALLETS_SQL, (as_of - days * DAY, as_of))
    return [wallet for (wallet,) in rows]


def shard_jobs(
    wallets: Sequence[str],
    as_ofs: Sequence[int],
    options: RebuildOptions,
    computed_at: float,
    day_groups: int = 1,
) -> list[ShardJob]:
    """`wallets` cut into shards of `shard_wallets`, each computed at `as_ofs` (oldest first).

    `day_groups` > 1 also cuts the as_ofs into that many runs of consecutive days, one job per
    shard and run: more jobs than shards, so that few shards still keep every process busy.
    """
    size = options.shard_wallets
    groups = max(1, min(day_groups, len(as_ofs)))
    cut = [len(as_ofs) * n // groups for n in range(groups + 1)]
    days = [tuple(as_ofs[cut[n] : cut[n + 1]]) for n in range(groups)]
    shards = [tuple(wallets[start : start + size]) for start in range(0, len(wallets), size)]
    return [
        ShardJob(n, shard, group, options.windows, computed_at)
        for n, (shard, group) in enumerate((s, d) for s in shards for d in days)
    ]


def run_rebuild(
    database: Path | str,
    options: RebuildOptions,
    progress: Callable[[int, int], None] | None = None,
    *,
    shard_function: ShardFunction = worker_shard,
) -> RebuildResult:
    """Compute every active wallet's windows and upsert them `source=batch` in one transaction.

    `progress(done, total)` is called with wallets done after each shard. `shard_function` is the
    worker-side computation (tests swap in one that fails). The day is recorded in
    `rebuild_runs` (as of `as_of`) in the same transaction, unless a wallet failed.
    """
    started = time.perf_counter()
    computed_at = time.time() if options.computed_at is None else options.computed_at
    result = RebuildResult(options.as_of, feature_date(options.as_of))
    with closing(connect(database, options.busy_timeout_ms)) as conn:
        migrate(conn)
        wallets = active_wallets(conn, options.as_of, max(options.windows))
        jobs = shard_jobs(wallets, (options.as_of,), options, computed_at)

        def done(shard: ShardResult) -> None:
            result.wallets += shard.wallets
            if progress is not None:
                progress(result.wallets, len(wallets))

        shards, result.workers = run_shards(
            conn, database, jobs, parallel=options.parallel, workers=options.workers,
            busy_timeout_ms=options.busy_timeout_ms, on_shard=done, shard_function=shard_function,
        )  # fmt: skip
        result.shards = len(jobs)
        result.read_compute_s = time.perf_counter() - started
        result.fallback_shards = [shard.index for shard in shards if shard.fallback]
        result.failed_wallets = [wallet for shard in shards for _, wallet in shard.failed]

        if options.skew_rules is not None:  # before the batch rows replace the on-demand ones
            result.skew = measure_skew(
                conn, wallets, result.feature_date, options.publish_window, options.skew_rules
            )
        write_started = time.perf_counter()
        rows = [row for shard in shards for row in shard.rows]
        checkpoints = [row for shard in shards for row in shard.checkpoints]
        run = RebuildRun(result.feature_date, options.as_of, result.wallets, time.time())
        result.rows_written = write_rows(
            conn, rows, None if result.failed_wallets else run, checkpoints
        )
        result.write_s = time.perf_counter() - write_started
    window = options.publish_window
    result.rows_to_publish = [row for row in rows if row[WINDOW_DAYS_COLUMN] == window]
    result.duration_s = time.perf_counter() - started
    return result


def write_rows(
    conn: Connection,
    rows: list[tuple[Any, ...]],
    run: RebuildRun | None,
    checkpoints: Sequence[tuple[Any, ...]] = (),
) -> int:
    """One upsert transaction (with `run` recorded and the wallets' `checkpoints`); a lock held
    past the busy timeout is retried with backoff."""
    for attempt, delay in enumerate(backoff(WRITE_FIRST_RETRY_S, most=8.0), start=1):
        try:
            return write_rebuild(conn, rows, run, checkpoints)
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or not is_transient(exc):
                raise
            log.warning(
                "rebuild: database busy or unreachable (%s), retrying the write in %.1fs",
                exc,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("backoff never ends")


def feature_set_from_row(row: Sequence[Any]) -> FeatureSet:
    """The FeatureSet a `wallet_features` row carries (no re-validation: the core made it)."""
    from agents.core.records import FeatureSet

    return FeatureSet.model_construct(**dict(zip(FEATURE_ROW_KEYS, row, strict=True)))
