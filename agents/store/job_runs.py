"""A rebuild spread over the workers, as stored: its run, its shards done, its end, once.

The leader records a run (`start_job_run`) before it publishes the run's jobs. A worker records
the shards it wrote and published (`record_shards`); the transaction that records a run's last
shard also marks the run finished and records its day in `rebuild_runs` (published), exactly
once: it first updates the run's row, which makes the workers' transactions on one run take
turns (a row lock on PostgreSQL, the write lock on SQLite), so the last of them sees every shard,
and `finished_at IS NULL` lets only one of them finish the run. A shard recorded twice (a job
redelivered after its worker died between publishing and committing) keeps its first record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.core.codec import dumps, loads
from agents.store.connection import Connection, transaction
from agents.store.runs import MARK_PUBLISHED_SQL, RECORD_RUN_SQL

__all__ = [
    "JobRun",
    "ShardDone",
    "job_run",
    "latest_job_run",
    "record_shards",
    "start_job_run",
]

START_RUN_SQL = """
INSERT INTO rebuild_job_runs (run_id, feature_date, as_of, shards, wallets, started_at, started_by)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING"""

# The first statement of a shard's transaction: holds the run's row until the commit.
TAKE_TURN_SQL = "UPDATE rebuild_job_runs SET last_shard_at = ? WHERE run_id = ?"

SHARD_DONE_SQL = """
INSERT INTO rebuild_job_shards
    (run_id, shard, wallets, rows_written, failed, skew, worker, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, shard) DO NOTHING"""

FINISH_SQL = """
UPDATE rebuild_job_runs SET finished_at = ?
WHERE run_id = ? AND finished_at IS NULL
  AND shards = (SELECT COUNT(*) FROM rebuild_job_shards WHERE run_id = ?)"""

RUN_COLUMNS = "run_id, feature_date, as_of, shards, wallets, started_at, started_by, finished_at"
RUN_SQL = f"SELECT {RUN_COLUMNS} FROM rebuild_job_runs WHERE run_id = ?"
LATEST_RUN_SQL = f"""
SELECT {RUN_COLUMNS} FROM rebuild_job_runs ORDER BY started_at DESC, run_id DESC LIMIT 1"""

SHARDS_SQL = """
SELECT shard, wallets, rows_written, failed, skew, worker, finished_at
FROM rebuild_job_shards WHERE run_id = ? ORDER BY shard"""


@dataclass(frozen=True, slots=True)
class ShardDone:
    """One shard written and published by `worker`, with its skew report (plain data)."""

    run_id: str
    shard: int
    wallets: int
    rows_written: int
    failed: int
    skew: dict[str, Any]
    worker: str
    finished_at: float


@dataclass(frozen=True)
class JobRun:
    """A run as stored: what the leader started, and the shards recorded so far."""

    run_id: str
    feature_date: str
    as_of: int
    shards: int
    wallets: int
    started_at: float
    started_by: str
    finished_at: float | None
    done: tuple[ShardDone, ...] = field(default=(), repr=False)

    @property
    def shards_done(self) -> int:
        return len(self.done)

    @property
    def wallets_done(self) -> int:
        return sum(shard.wallets for shard in self.done)

    @property
    def rows_written(self) -> int:
        return sum(shard.rows_written for shard in self.done)

    @property
    def failed(self) -> int:
        return sum(shard.failed for shard in self.done)

    def shards_by_worker(self) -> dict[str, int]:
        """How many of the run's shards each worker recorded."""
        counts: dict[str, int] = {}
        for shard in self.done:
            counts[shard.worker] = counts.get(shard.worker, 0) + 1
        return dict(sorted(counts.items()))


def start_job_run(
    conn: Connection,
    run_id: str,
    feature_date: str,
    as_of: int,
    shards: int,
    wallets: int,
    started_at: float,
    started_by: str,
) -> None:
    """Record a run before its jobs are published (a run id recorded already is kept).

    A run of no shard (no active wallet) has nothing to wait for: it is finished and its day
    recorded at once, as one host records a rebuild of no wallet.
    """
    with transaction(conn):
        conn.execute(
            START_RUN_SQL,
            (run_id, feature_date, as_of, shards, wallets, started_at, started_by),
        )
        if shards == 0 and conn.execute(FINISH_SQL, (started_at, run_id, run_id)).rowcount == 1:
            conn.execute(RECORD_RUN_SQL, (feature_date, as_of, 0, 0, started_at))
            conn.execute(MARK_PUBLISHED_SQL, (started_at, feature_date, as_of))


def record_shards(conn: Connection, done: Sequence[ShardDone], now: float) -> list[str]:
    """Record shards written and published, in one transaction; return the runs it finished.

    A finished run without a failed wallet gets its day recorded in `rebuild_runs`, published,
    in that same transaction (a day with a failed wallet is not recorded, as on one host).
    """
    finished: list[str] = []
    with transaction(conn):
        # Runs in a fixed order: two workers never wait for each other's run rows in turn.
        for run_id in sorted({shard.run_id for shard in done}):
            conn.execute(TAKE_TURN_SQL, (now, run_id))
            conn.executemany(SHARD_DONE_SQL, [_shard_row(s) for s in done if s.run_id == run_id])
            if conn.execute(FINISH_SQL, (now, run_id, run_id)).rowcount != 1:
                continue
            finished.append(run_id)
            run = _read_run(conn, run_id)
            if run is not None and not run.failed:
                conn.execute(
                    RECORD_RUN_SQL,
                    (run.feature_date, run.as_of, run.wallets_done, run.rows_written, now),
                )
                conn.execute(MARK_PUBLISHED_SQL, (now, run.feature_date, run.as_of))
    return finished


def job_run(conn: Connection, run_id: str) -> JobRun | None:
    """The run `run_id` with its shards done, or None if there is no such run."""
    if not conn.has_table("rebuild_job_runs"):
        return None
    return _read_run(conn, run_id)


def latest_job_run(conn: Connection) -> JobRun | None:
    """The run started last (the current one, or the last one), or None before the first."""
    if not conn.has_table("rebuild_job_runs"):
        return None  # not migrated yet: nothing was ever started
    row = conn.execute(LATEST_RUN_SQL).fetchone()
    return None if row is None else _run_from(conn, row)


def _read_run(conn: Connection, run_id: str) -> JobRun | None:
    row = conn.execute(RUN_SQL, (run_id,)).fetchone()
    return None if row is None else _run_from(conn, row)


def _run_from(conn: Connection, row: Sequence[Any]) -> JobRun:
    run_id, feature_date, as_of, shards, wallets, started_at, started_by, finished_at = row
    done = tuple(
        ShardDone(run_id, shard, n, rows, failed, loads(skew), worker, at)
        for shard, n, rows, failed, skew, worker, at in conn.execute(SHARDS_SQL, (run_id,))
    )
    return JobRun(
        run_id, feature_date, int(as_of), int(shards), int(wallets), float(started_at),
        started_by, None if finished_at is None else float(finished_at), done,
    )  # fmt: skip


def _shard_row(shard: ShardDone) -> tuple[Any, ...]:
    return (
        shard.run_id, shard.shard, shard.wallets, shard.rows_written, shard.failed,
        dumps(shard.skew).decode(), shard.worker, shard.finished_at,
    )  # fmt: skip
