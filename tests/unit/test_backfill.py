"""Backfill of past days on small hand-made data: days, as_of, the plan, resume, interruption."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

import agents.compute.shards as shards
import agents.core.shard_kernel as shard_kernel
from agents.compute.backfill import (
    Action,
    PlannedDay,
    active_counts,
    day_as_of,
    days_between,
    passes,
    plan_days,
    run_backfill,
)
from agents.compute.rebuild import RebuildOptions, active_wallets, run_rebuild
from agents.compute.shards import ShardJob, ShardResult
from agents.core.checkpoint import Checkpoint, wallet_features_since
from agents.core.columns import FillColumns
from agents.core.features import DAY, feature_date
from agents.core.shard_kernel import windows_of_columns
from agents.store import connect, migrate
from agents.store.runs import RunState, rebuild_runs
from agents.store.schema import FEATURE_ROW_KEYS

FIRST = date(2026, 1, 1)
DAYS = days_between(FIRST, date(2026, 1, 6))
JAN1_END = 1_767_311_999  # 2026-01-01T23:59:59Z
GONE = "0x" + "a" * 40  # its last trade is in Jan 1's 90-day window only, at its first second
LATE = "0x" + "b" * 40  # trades from Jan 3, 00:00:00
EDGE = "0x" + "c" * 40  # one trade at Jan 2, 23:59:59: in Jan 2's windows
BUSY = "0x" + "d" * 40  # round trips every day, history long before
AFTER = "0x" + "e" * 40  # trades only after the range


def trade(wallet: str, n: int, ts: int, side: str = "BUY", price: float = 0.4) -> tuple[Any, ...]:
    return (f"{wallet[2:6]}-{n}", wallet, f"m{n % 3}", side, 10.0, price, ts)


ACTIVE = [2, 2, 3, 3, 3, 3]  # wallets active on each of DAYS: GONE leaves, LATE and EDGE come


def trades() -> list[tuple[Any, ...]]:
    out = [
        trade(GONE, 0, JAN1_END - 300 * DAY),
        trade(GONE, 1, JAN1_END - 90 * DAY),
        trade(LATE, 0, JAN1_END + 1 + DAY),
        trade(LATE, 1, JAN1_END + 3 * DAY, "SELL", 0.7),
        trade(EDGE, 0, JAN1_END + DAY),
        trade(AFTER, 0, JAN1_END + 30 * DAY),
    ]
    for n in range(12):
        ts = JAN1_END - 5 * DAY + n * DAY // 2
        out.append(trade(BUSY, 2 * n, ts))
        out.append(trade(BUSY, 2 * n + 1, ts + 3600, "SELL", 0.3 + 0.05 * n))
    out.append(trade(BUSY, 99, JAN1_END - 200 * DAY))
    return out


def make_db(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    with closing(connect(path)) as conn:
        migrate(conn)
        conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO markets VALUES ('m0', 'Sports')")
    return path


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    yield make_db(tmp_path / "personas.db", trades())


def table(path: Path, name: str = "wallet_features") -> list[tuple[Any, ...]]:
    keys = ", ".join(FEATURE_ROW_KEYS) if name == "wallet_features" else "*"
    with closing(connect(path)) as conn:
        return sorted(conn.execute(f"SELECT {keys} FROM {name}").fetchall())


def without_computed_at(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    at = FEATURE_ROW_KEYS.index("computed_at")
    return [row[:at] + row[at + 1 :] for row in rows]


def options(**changes: Any) -> RebuildOptions:
    values: dict[str, Any] = {"parallel": False, "computed_at": 1.0, **changes}
    return RebuildOptions(day_as_of(DAYS[-1]), **values)


# --- days and as_of --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "as_of"),
    [
        (date(2026, 1, 1), JAN1_END),
        (date(2024, 2, 29), 1_709_251_199),
        (date(2026, 10, 31), 1_793_491_199),
        (date(1970, 1, 1), DAY - 1),
    ],
)
def test_a_day_is_rebuilt_as_of_its_last_second(day: date, as_of: int) -> None:
    assert day_as_of(day) == as_of
    assert feature_date(as_of) == day.isoformat()  # SPEC §3: feature_date = UTC date of as_of
    assert feature_date(as_of + 1) == (day + timedelta(days=1)).isoformat()


def test_days_between_includes_both_ends_oldest_first() -> None:
    assert days_between(date(2026, 2, 27), date(2026, 3, 2)) == [
        date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2),
    ]  # fmt: skip
    assert days_between(FIRST, FIRST) == [FIRST]
    assert days_between(FIRST, FIRST - timedelta(days=1)) == []


# --- the plan: what is done, what is skipped -------------------------------------------------

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)


@pytest.mark.parametrize(
    ("recorded", "force", "publish", "action"),
    [
        (None, False, False, Action.COMPUTE),
        (RunState(JAN1_END, None), False, False, Action.SKIP),
        (RunState(JAN1_END, 5.0), False, True, Action.SKIP),
        (RunState(JAN1_END, None), False, True, Action.PUBLISH),
        # the daily rebuild recorded the day as of 03:00: not the day's end, so not done
        (RunState(JAN1_END - 21 * 3600 + 1, 5.0), False, False, Action.COMPUTE),
        (RunState(JAN1_END, 5.0), True, False, Action.COMPUTE),
        (RunState(JAN1_END, None), True, True, Action.COMPUTE),
    ],
)
def test_plan_days(recorded: RunState | None, force: bool, publish: bool, action: Action) -> None:
    runs = {} if recorded is None else {"2026-01-01": recorded}
    assert plan_days([D1, D2], runs, force=force, publish=publish) == [
        (D1, action), (D2, Action.COMPUTE),
    ]  # fmt: skip


def test_passes_read_up_to_n_days_at_once_and_publish_in_order() -> None:
    kinds = "CCCSCCCPCC"
    action = {"C": Action.COMPUTE, "S": Action.SKIP, "P": Action.PUBLISH}
    plan = [PlannedDay(FIRST + timedelta(days=n), action[k]) for n, k in enumerate(kinds)]
    got = ["".join(kinds[(d.day - FIRST).days] for d in b) for b in passes(plan, 2)]
    assert got == ["CC", "S", "CC", "CC", "P", "CC"]
    assert ["".join(kinds[(d.day - FIRST).days] for d in b) for b in passes(plan, 7)] == [
        "S", "CCCCCC", "P", "CC",
    ]  # fmt: skip


# --- active wallets per day, from one query --------------------------------------------------


def test_active_counts_follow_each_days_window(db: Path) -> None:
    with closing(connect(db)) as conn:
        expected = [len(active_wallets(conn, day_as_of(day), 90)) for day in DAYS]
        assert active_counts(conn, FIRST, len(DAYS), 90) == expected == ACTIVE
        assert active_wallets(conn, JAN1_END, 90) == [GONE, BUSY]
        assert active_wallets(conn, JAN1_END + 2 * DAY, 90) == [LATE, EDGE, BUSY]
        assert active_counts(conn, FIRST, 0, 90) == []


def test_active_counts_equal_the_daily_query_on_random_times(tmp_path: Path) -> None:
    rng = random.Random(7)
    start = JAN1_END - 40 * DAY
    boundaries = [start + n * DAY + s for n in range(60) for s in (-1, 0, 1)]
    stamps = boundaries + [rng.randrange(start - 10 * DAY, start + 60 * DAY) for _ in range(300)]
    wallets = [f"0x{n:040x}" for n in range(25)]
    rows = [trade(rng.choice(wallets), n, ts) for n, ts in enumerate(stamps)]
    path = make_db(tmp_path / "random.db", rows)
    with closing(connect(path)) as conn:
        for span in (1, 7, 30):
            expected = [
                len(active_wallets(conn, day_as_of(FIRST + timedelta(days=n)), span))
                for n in range(20)
            ]
            assert active_counts(conn, FIRST, 20, span) == expected


# --- the backfill ------------------------------------------------------------------------------


def single_day_runs(path: Path) -> None:
    for day in DAYS:
        run_rebuild(path, RebuildOptions(day_as_of(day), parallel=False, computed_at=1.0))


@pytest.mark.parametrize("days_per_pass", [1, 4, 7])
def test_a_backfill_writes_what_single_day_rebuilds_write(
    db: Path, tmp_path: Path, days_per_pass: int
) -> None:
    reference = Path(shutil.copy(db, tmp_path / "reference.db"))
    single_day_runs(reference)
    result = run_backfill(db, DAYS, options(), days_per_pass=days_per_pass)
    assert table(db) == table(reference)
    assert len(table(db)) == 3 * sum(ACTIVE)
    runs = table(db, "rebuild_runs")
    assert [(r[0], r[1], r[2], r[3]) for r in runs] == [
        (day.isoformat(), day_as_of(day), n, 3 * n) for day, n in zip(DAYS, ACTIVE, strict=True)
    ]
    summary = result.summary()
    assert (summary["days"], summary["computed"], summary["skipped"]) == (6, 6, 0)
    assert (summary["wallets"], summary["rows_written"]) == (sum(ACTIVE), 3 * sum(ACTIVE))
    assert [d["wallets"] for d in summary["per_day"]] == ACTIVE


def test_days_done_are_skipped_and_force_recomputes(db: Path) -> None:
    run_backfill(db, DAYS[:3], options())
    first = table(db)
    again = run_backfill(db, DAYS, options(computed_at=2.0))
    assert [day.action for day in again.days] == [Action.SKIP] * 3 + [Action.COMPUTE] * 3
    assert again.summary()["rows_written"] == 3 * sum(ACTIVE[3:])
    assert {row[5] for row in table(db) if row[1] <= "2026-01-03"} == {1.0}  # not rewritten
    forced = run_backfill(db, DAYS, options(computed_at=3.0), force=True)
    assert [day.action for day in forced.days] == [Action.COMPUTE] * 6
    assert {row[5] for row in table(db)} == {3.0}
    assert without_computed_at([r for r in table(db) if r[1] <= "2026-01-03"]) == (
        without_computed_at(first)
    )


def test_a_day_rebuilt_at_another_time_is_recomputed(db: Path) -> None:
    # The daily rebuild of Jan 2 ran at 03:00 that day: its rows are not the day's end.
    run_rebuild(db, RebuildOptions(JAN1_END + 3 * 3600 + 1, parallel=False, computed_at=1.0))
    with closing(connect(db)) as conn:
        assert rebuild_runs(conn, "2026-01-01", "2026-01-06") == {
            "2026-01-02": RunState(JAN1_END + 3 * 3600 + 1, None)
        }
    result = run_backfill(db, DAYS[:2], options())
    assert [day.action for day in result.days] == [Action.COMPUTE, Action.COMPUTE]
    assert {row[3] for row in table(db)} == {JAN1_END, JAN1_END + DAY}


def interrupt_on_day_3(job: ShardJob) -> ShardResult:
    """A worker interrupted (as by Ctrl-C) on any job holding Jan 3; importable by workers."""
    if day_as_of(date(2026, 1, 3)) in job.as_ofs:
        raise KeyboardInterrupt
    return shards.worker_shard(job)


@pytest.mark.parametrize("parallel", [True, False])
def test_a_backfill_stopped_on_day_3_resumes_to_the_rows_of_one_run(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    reference = Path(shutil.copy(db, tmp_path / "reference.db"))
    run_backfill(reference, DAYS, options(computed_at=9.0))
    stopped = options(parallel=parallel, workers=2, shard_wallets=1)
    with monkeypatch.context() as patch:
        if not parallel:
            compute = shards.compute_shard

            def interrupted(conn: Any, job: ShardJob) -> ShardResult:
                if day_as_of(date(2026, 1, 3)) in job.as_ofs:
                    raise KeyboardInterrupt
                return compute(conn, job)

            patch.setattr(shards, "compute_shard", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_backfill(db, DAYS, stopped, days_per_pass=2, shard_function=interrupt_on_day_3)
    # Whole days only: the two before the interruption, recorded; nothing of the rest.
    assert [row[0] for row in table(db, "rebuild_runs")] == ["2026-01-01", "2026-01-02"]
    assert {row[1] for row in table(db)} == {"2026-01-01", "2026-01-02"}
    resumed = run_backfill(db, DAYS, options(parallel=parallel, workers=2, shard_wallets=1))
    assert [day.action for day in resumed.days] == [Action.SKIP] * 2 + [Action.COMPUTE] * 4
    assert without_computed_at(table(db)) == without_computed_at(table(reference))
    assert [row[:4] for row in table(db, "rebuild_runs")] == [
        row[:4] for row in table(reference, "rebuild_runs")
    ]


def test_a_day_with_a_failed_wallet_is_written_but_not_recorded(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    def failing(checkpoint: Checkpoint, fills: Any, as_of: int, windows: Any) -> Any:
        # the shard fails, then its wallet-by-wallet fallback loses this wallet's day only
        if as_of == day_as_of(date(2026, 1, 2)) and fills[0].trade_id.startswith(BUSY[2:6]):
            raise ZeroDivisionError("bad wallet")
        return wallet_features_since(checkpoint, fills, as_of, windows)

    def failing_shard(columns: FillColumns, wallets: Any, windows: Any) -> Any:
        if any(columns.trade_ids[rows[0]].startswith(BUSY[2:6]) for rows, _ in wallets if rows):
            raise ZeroDivisionError("bad wallet")
        return windows_of_columns(columns, wallets, windows)

    monkeypatch.setattr(shards, "wallet_features_since", failing)
    monkeypatch.setattr(shard_kernel, "windows_of_columns", failing_shard)
    result = run_backfill(db, DAYS[:3], options())
    assert result.failed and result.summary()["failed_wallets"] == {"2026-01-02": [BUSY]}
    assert [row[0] for row in table(db, "rebuild_runs")] == ["2026-01-01", "2026-01-03"]
    assert {(row[0], row[1]) for row in table(db) if row[1] == "2026-01-02"} == {
        (EDGE, "2026-01-02")
    }
    monkeypatch.undo()
    resumed = run_backfill(db, DAYS[:3], options())
    assert [day.action for day in resumed.days] == [Action.SKIP, Action.COMPUTE, Action.SKIP]
    assert not resumed.failed


def test_each_day_is_published_after_its_commit_and_a_lost_publish_resumes(db: Path) -> None:
    sent: list[tuple[str, str]] = []

    def publish(rows: Any) -> int:
        if len(sent) >= 4:  # the broker is lost after two days of two wallets
            raise KeyboardInterrupt
        sent.extend((row[0], row[1]) for row in rows)
        return len(rows)

    with pytest.raises(KeyboardInterrupt):
        run_backfill(db, DAYS[:4], options(), publish=publish)
    runs = {row[0]: row[5] for row in table(db, "rebuild_runs")}
    # Day 3 was written and recorded, not published: resumed by publishing its stored rows.
    assert list(runs) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert runs["2026-01-03"] is None and None not in (runs["2026-01-01"], runs["2026-01-02"])
    sent.clear()
    resumed = run_backfill(db, DAYS[:4], options(), publish=lambda rows: len(rows))
    assert [day.action for day in resumed.days] == [
        Action.SKIP, Action.SKIP, Action.PUBLISH, Action.COMPUTE,
    ]  # fmt: skip
    assert [day.published for day in resumed.days] == [0, 0, 3, 3]
    assert None not in {row[5] for row in table(db, "rebuild_runs")}
    # Features written without publishing are published by a later run that publishes.
    run_backfill(db, DAYS[4:], options())
    later = run_backfill(db, DAYS, options(), publish=lambda rows: len(rows))
    assert [day.action for day in later.days][4:] == [Action.PUBLISH, Action.PUBLISH]


def test_every_day_of_a_backfill_is_stamped_with_one_computed_at(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(range(1_000, 2_000))
    monkeypatch.setattr("agents.compute.backfill.time.time", lambda: float(next(ticks)))
    run_backfill(db, DAYS, options(computed_at=None), days_per_pass=1)
    at = FEATURE_ROW_KEYS.index("computed_at")
    assert {row[at] for row in table(db)} == {1_000.0}  # the run's start, not each pass's
