"""Backfills of past days (SPEC §9, `personas rebuild --from D --to D`), each as of its end.

Day D is rebuilt as of its last second, D 23:59:59 UTC: its feature_date is D (SPEC §3) and its
windows hold every trade of the day. Days run oldest first, in passes of up to `DAYS_PER_PASS`:
a pass reads each shard once, up to its last day, and computes each of its days from that read,
bit-equal to the daily rebuild of that day (the kernel keeps only the trades ≤ as_of). Each day is
then written in a transaction of its own, with its line in `rebuild_runs`: a killed backfill
leaves whole days and resumes after the last one, and a day recorded as of its end is skipped
unless forced. When publishing, a day's rows are sent after its commit and the day is marked
published; a day written but not published (killed in between, or an earlier `--no-publish`) is
published from the store, not recomputed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from pathlib import Path
from typing import Any

from agents.compute.rebuild import (
    ACTIVE_WALLETS_SQL,
    AS_OF_COLUMN,
    WINDOW_DAYS_COLUMN,
    RebuildOptions,
    shard_jobs,
    write_rows,
)
from agents.compute.shards import ShardFunction, ShardResult, run_shards, worker_shard
from agents.core.features import DAY
from agents.store import Connection, connect, migrate
from agents.store.runs import (
    RebuildRun,
    RunState,
    batch_feature_rows,
    mark_published,
    rebuild_runs,
)

__all__ = [
    "DAYS_PER_PASS",
    "Action",
    "BackfillProgress",
    "BackfillResult",
    "DayResult",
    "PlannedDay",
    "active_counts",
    "day_as_of",
    "days_between",
    "passes",
    "plan_backfill",
    "plan_days",
    "run_backfill",
]

# Days computed from one read of each shard. The read (every trade of the shard's wallets, for
# the lifetime stats) is a large share of a day's work, so a week per pass saves most of it,
# while a pass holds only a week of rows in memory and a kill loses at most a week's computation.
DAYS_PER_PASS = 7

# Per wallet, the days (0 = the first day of the range) on which a trade keeps it active: trade
# time u seconds after the first window's start is in day i's window iff
# i·DAY ≤ u ≤ i·DAY + span, i.e. ceil(u / DAY) − span_days ≤ i ≤ floor(u / DAY). Grouped, one row
# per wallet and such interval, from the covering index. Parameters: span_days, start, start, end.
ACTIVITY_SQL = f"""
SELECT proxy_wallet, (u + {DAY - 1}) / {DAY} - ? AS first_day, u / {DAY} AS last_day
FROM (SELECT proxy_wallet, timestamp - ? AS u FROM trades INDEXED BY trades_wallet_time
      WHERE timestamp BETWEEN ? AND ?) AS spans
GROUP BY proxy_wallet, first_day, last_day
ORDER BY proxy_wallet, first_day"""


class Action(StrEnum):
    """What a backfill does with one day."""

    COMPUTE = "compute"  # not done (or forced): compute, write, record (and publish)
    PUBLISH = "publish"  # done but not published, and publishing: publish its stored rows
    SKIP = "skip"  # done (and published, when publishing)


@dataclass(frozen=True)
class PlannedDay:
    """One day of a backfill: what is done with it and how many wallets are active then."""

    day: date
    action: Action
    wallets: int = 0

    @property
    def as_of(self) -> int:
        return day_as_of(self.day)

    @property
    def feature_date(self) -> str:
        return self.day.isoformat()


def day_as_of(day: date) -> int:
    """The as_of of a backfilled day: its last second, 23:59:59 UTC (feature_date = the day)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + DAY - 1


def days_between(first: date, last: date) -> list[date]:
    """Every day from `first` to `last`, both included, oldest first (empty if last < first)."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def plan_days(
    days: Sequence[date], recorded: Mapping[str, RunState], *, force: bool, publish: bool
) -> list[tuple[date, Action]]:
    """Each day's action: a day is done when it is recorded as of its end (not as of another
    time of the day, as the daily rebuild records it)."""
    plan = []
    for day in days:
        state = recorded.get(day.isoformat())
        done = state is not None and state.as_of == day_as_of(day)
        if force or not done:
            action = Action.COMPUTE
        elif publish and state is not None and state.published_at is None:
            action = Action.PUBLISH
        else:
            action = Action.SKIP
        plan.append((day, action))
    return plan


def passes(plan: Sequence[PlannedDay], days_per_pass: int) -> list[list[PlannedDay]]:
    """The plan as it runs, oldest first: days to compute in passes of up to `days_per_pass`,
    each other day on its own (a day to publish ends the pass before it, so publishing keeps
    the days' order)."""
    out: list[list[PlannedDay]] = []
    run: list[PlannedDay] = []
    for day in plan:
        if day.action is Action.COMPUTE:
            run.append(day)
            if len(run) == days_per_pass:
                out.append(run)
                run = []
            continue
        if day.action is Action.PUBLISH and run:
            out.append(run)
            run = []
        out.append([day])
    if run:
        out.append(run)
    return out


def active_counts(conn: Connection, first: date, days: int, span_days: int) -> list[int]:
    """Wallets active on each of `days` days from `first` (a trade in the `span_days` window up
    to the day's end, as the daily rebuild selects them), from one query."""
    if days <= 0:
        return []
    start = day_as_of(first) - span_days * DAY
    end = day_as_of(first + timedelta(days=days - 1))
    diff = [0] * (days + 1)
    rows = conn.execute(ACTIVITY_SQL, (span_days, start, start, end))
    for _, intervals in itertools.groupby(rows, key=itemgetter(0)):
        counted = -1  # the last day already counted for this wallet
        for _, lo, hi in intervals:  # ordered by lo
            lo, hi = max(lo, counted + 1), min(hi, days - 1)
            if lo <= hi:
                diff[lo] += 1
                diff[hi + 1] -= 1
                counted = hi
    return list(itertools.accumulate(diff[:days]))


def plan_backfill(
    conn: Connection,
    days: Sequence[date],
    options: RebuildOptions,
    *,
    force: bool = False,
    publish: bool = False,
) -> list[PlannedDay]:
    """The plan of a backfill of consecutive `days` (reads only: `--dry-run` prints it)."""
    if not days:
        return []
    if list(days) != days_between(days[0], days[-1]):
        raise ValueError("a backfill's days must be consecutive, oldest first")
    recorded = rebuild_runs(conn, days[0].isoformat(), days[-1].isoformat())
    counts = active_counts(conn, days[0], len(days), max(options.windows))
    return [
        PlannedDay(day, action, wallets)
        for (day, action), wallets in zip(
            plan_days(days, recorded, force=force, publish=publish), counts, strict=True
        )
    ]


@dataclass
class BackfillProgress:
    """Where a backfill is: days finished of those to compute or publish, wallet-days computed."""

    days: int = 0
    wallets: int = 0
    days_done: int = 0
    wallets_done: int = 0


@dataclass
class DayResult:
    """What a backfill did with one day."""

    feature_date: str
    as_of: int
    action: Action
    wallets: int = 0
    rows_written: int = 0
    published: int = 0
    failed_wallets: list[str] = field(default_factory=list)


@dataclass
class BackfillResult:
    """What a backfill did, day by day."""

    first: str
    last: str
    days: list[DayResult] = field(default_factory=list)
    workers: int = 0
    days_per_pass: int = DAYS_PER_PASS
    fallback_shards: int = 0
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return any(day.failed_wallets for day in self.days)

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (`--json`)."""
        computed = [day for day in self.days if day.action is Action.COMPUTE]
        wallets = sum(day.wallets for day in computed)
        return {
            "from": self.first,
            "to": self.last,
            "days": len(self.days),
            "computed": len(computed),
            "published_only": sum(day.action is Action.PUBLISH for day in self.days),
            "skipped": sum(day.action is Action.SKIP for day in self.days),
            "wallets": wallets,
            "rows_written": sum(day.rows_written for day in self.days),
            "published": sum(day.published for day in self.days),
            "failed_wallets": {
                d.feature_date: d.failed_wallets for d in self.days if d.failed_wallets
            },
            "fallback_shards": self.fallback_shards,
            "workers": self.workers,
            "days_per_pass": self.days_per_pass,
            "duration_s": round(self.duration_s, 3),
            "s_per_day": round(self.duration_s / len(computed), 3) if computed else 0.0,
            "wallets_per_s": round(wallets / self.duration_s, 1) if self.duration_s > 0 else 0.0,
            "per_day": [
                {"feature_date": d.feature_date, "as_of": d.as_of, "action": str(d.action),
                 "wallets": d.wallets, "rows_written": d.rows_written, "published": d.published}
                for d in self.days
            ],
        }  # fmt: skip


Publish = Callable[[Sequence[tuple[Any, ...]]], int]


@dataclass
class _Backfill:
    """One backfill run: its connection, its options and what it has done so far."""

    conn: Connection
    database: Path | str
    options: RebuildOptions
    publish: Publish | None
    progress: Callable[[BackfillProgress], None] | None
    shard_function: ShardFunction
    result: BackfillResult
    #: every day's rows are stamped with it (`RebuildOptions.computed_at`, or the run's start)
    computed_at: float
    at: BackfillProgress = field(default_factory=BackfillProgress)

    def tick(self, days: int = 0, wallets: int = 0) -> None:
        self.at.days_done += days
        self.at.wallets_done += wallets
        if self.progress is not None:
            self.progress(self.at)

    def compute(self, days: Sequence[PlannedDay]) -> None:
        """One pass: each shard read once, computed at every day; then each day written."""
        options = self.options
        span = max(options.windows) * DAY
        read = (days[0].as_of - span, days[-1].as_of)
        wallets = [wallet for (wallet,) in self.conn.execute(ACTIVE_WALLETS_SQL, read)]
        shards = -(-len(wallets) // options.shard_wallets)
        # Fewer shards than processes: cut the days too, so that every process has work.
        groups = -(-options.workers // shards) if options.parallel and shards else 1
        jobs = shard_jobs(wallets, [day.as_of for day in days], options, self.computed_at, groups)

        def done(shard: ShardResult) -> None:
            self.tick(wallets=shard.wallets)

        results, workers = run_shards(
            self.conn, self.database, jobs, parallel=options.parallel, workers=options.workers,
            busy_timeout_ms=options.busy_timeout_ms, on_shard=done,
            shard_function=self.shard_function,
        )  # fmt: skip
        self.result.workers = max(self.result.workers, workers)
        self.result.fallback_shards += sum(shard.fallback for shard in results)
        rows: dict[int, list[tuple[Any, ...]]] = {day.as_of: [] for day in days}
        failed: dict[int, list[str]] = {day.as_of: [] for day in days}
        # Each wallet's checkpoint as of its last day of the pass, written with the last day.
        checkpoints = [row for shard in results for row in shard.checkpoints]
        for shard in results:
            for row in shard.rows:
                rows[row[AS_OF_COLUMN]].append(row)
            for as_of, wallet in shard.failed:
                failed[as_of].append(wallet)
        del results
        for day in days:
            last = day is days[-1]
            self.write(day, rows.pop(day.as_of), failed[day.as_of], checkpoints if last else ())

    def write(
        self,
        day: PlannedDay,
        rows: list[tuple[Any, ...]],
        failed: list[str],
        checkpoints: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """One day's rows and its record in one transaction (no record if a wallet failed)."""
        window = self.options.publish_window
        published = [row for row in rows if row[WINDOW_DAYS_COLUMN] == window]
        run = RebuildRun(day.feature_date, day.as_of, len(published), time.time())
        written = write_rows(self.conn, rows, None if failed else run, checkpoints)
        outcome = DayResult(day.feature_date, day.as_of, Action.COMPUTE, len(published), written,
                            failed_wallets=failed)  # fmt: skip
        self.send(outcome, published, recorded=not failed)
        self.result.days.append(outcome)
        self.tick(days=1)

    def republish(self, day: PlannedDay) -> None:
        """A day written but not published: its stored rows, published."""
        rows = batch_feature_rows(
            self.conn, day.feature_date, day.as_of, self.options.publish_window
        )
        outcome = DayResult(day.feature_date, day.as_of, Action.PUBLISH, len(rows))
        self.send(outcome, rows, recorded=True)
        self.result.days.append(outcome)
        self.tick(days=1)

    def send(self, outcome: DayResult, rows: Sequence[tuple[Any, ...]], recorded: bool) -> None:
        if self.publish is None:
            return
        outcome.published = self.publish(rows)
        if recorded:
            mark_published(self.conn, outcome.feature_date, outcome.as_of, time.time())


def run_backfill(
    database: Path | str,
    days: Sequence[date],
    options: RebuildOptions,
    *,
    force: bool = False,
    publish: Publish | None = None,
    progress: Callable[[BackfillProgress], None] | None = None,
    days_per_pass: int = DAYS_PER_PASS,
    shard_function: ShardFunction = worker_shard,
) -> BackfillResult:
    """Rebuild each of the consecutive `days` as of its end, oldest first (`options.as_of` is
    not used). `publish(rows)` sends a day's `publish_window` rows and returns how many were
    sent; None writes features only. `progress` is called as shards and days finish."""
    if not days:
        raise ValueError("a backfill needs at least one day")
    started = time.perf_counter()
    computed_at = time.time() if options.computed_at is None else options.computed_at
    result = BackfillResult(days[0].isoformat(), days[-1].isoformat(), days_per_pass=days_per_pass)
    with closing(connect(database, options.busy_timeout_ms)) as conn:
        migrate(conn)
        plan = plan_backfill(conn, days, options, force=force, publish=publish is not None)
        run = _Backfill(
            conn, database, options, publish, progress, shard_function, result, computed_at
        )
        todo = [day for day in plan if day.action is not Action.SKIP]
        compute = sum(day.wallets for day in todo if day.action is Action.COMPUTE)
        run.at = BackfillProgress(len(todo), compute)
        for days_of_pass in passes(plan, days_per_pass):
            first = days_of_pass[0]
            if first.action is Action.COMPUTE:
                run.compute(days_of_pass)
            elif first.action is Action.PUBLISH:
                run.republish(first)
            else:
                result.days.append(
                    DayResult(first.feature_date, first.as_of, Action.SKIP, first.wallets)
                )
    result.days.sort(key=lambda day: day.as_of)
    result.duration_s = time.perf_counter() - started
    return result
