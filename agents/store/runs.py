"""The rebuild's record of the days it finished (`rebuild_runs`), written with the days' rows.

A rebuild upserts its rows and records its day in one transaction, so a day is rebuilt and
recorded, or neither: a backfill (SPEC §9) that is killed resumes after the last recorded day.
`published_at` says that the day's FeatureSets were sent for reclassification; it is cleared
whenever the day is rebuilt again, since its rows are then new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from agents.store.checkpoints import CHECKPOINTS
from agents.store.connection import Connection, transaction
from agents.store.schema import FEATURE_ROW_KEYS
from agents.store.tables import FEATURES

__all__ = [
    "RebuildRun",
    "RunState",
    "batch_feature_rows",
    "mark_published",
    "rebuild_runs",
    "write_rebuild",
]

RECORD_RUN_SQL = """
INSERT INTO rebuild_runs (feature_date, as_of, wallets, rows_written, finished_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (feature_date) DO UPDATE SET as_of = excluded.as_of, wallets = excluded.wallets,
    rows_written = excluded.rows_written, finished_at = excluded.finished_at, published_at = NULL"""

RUNS_SQL = """
SELECT feature_date, as_of, published_at FROM rebuild_runs WHERE feature_date BETWEEN ? AND ?"""

MARK_PUBLISHED_SQL = """
UPDATE rebuild_runs SET published_at = ? WHERE feature_date = ? AND as_of = ?"""

BATCH_ROWS_SQL = f"""
SELECT {", ".join(FEATURE_ROW_KEYS)} FROM wallet_features
WHERE feature_date = ? AND as_of = ? AND window_days = ? AND source = 'batch'
ORDER BY proxy_wallet"""


@dataclass(frozen=True, slots=True)
class RebuildRun:
    """A rebuilt day to record beside its rows: its date, as_of, wallets and when it finished."""

    feature_date: str
    as_of: int
    wallets: int
    finished_at: float


class RunState(NamedTuple):
    """A recorded rebuild: its as_of, and when its rows were published (None: not yet)."""

    as_of: int
    published_at: float | None


def write_rebuild(
    conn: Connection,
    rows: Iterable[tuple[Any, ...]],
    run: RebuildRun | None,
    checkpoints: Sequence[tuple[Any, ...]] = (),
) -> int:
    """Upsert a rebuild's rows and its wallets' `checkpoints` (`checkpoint_row`s) and record
    `run`, in one transaction; return the feature rows written."""
    with transaction(conn):
        written = conn.bulk_upsert(FEATURES, list(rows))
        if checkpoints:
            conn.bulk_upsert(CHECKPOINTS, checkpoints)
        if run is not None:
            conn.execute(
                RECORD_RUN_SQL,
                (run.feature_date, run.as_of, run.wallets, written, run.finished_at),
            )
        return written


def rebuild_runs(conn: Connection, first: str, last: str) -> dict[str, RunState]:
    """The rebuilds recorded for the feature_dates `first` … `last` (ISO dates), by date."""
    if not conn.has_table("rebuild_runs"):
        return {}  # not migrated yet: a dry run reads an older database without migrating it
    rows = conn.execute(RUNS_SQL, (first, last))
    return {date: RunState(as_of, published_at) for date, as_of, published_at in rows}


def mark_published(conn: Connection, feature_date: str, as_of: int, at: float) -> None:
    """Record that the rows of `feature_date`'s rebuild as of `as_of` were published."""
    with transaction(conn):
        conn.execute(MARK_PUBLISHED_SQL, (at, feature_date, as_of))


def batch_feature_rows(
    conn: Connection, feature_date: str, as_of: int, window_days: int
) -> list[tuple[Any, ...]]:
    """The stored batch rows of one rebuilt day and window, by wallet (to publish them again)."""
    return conn.execute(BATCH_ROWS_SQL, (feature_date, as_of, window_days)).fetchall()
