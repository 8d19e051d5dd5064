"""A backfill == the daily rebuild of each of its days, bit for bit; killed, it resumes to it.

On generated data (SPEC §9: `--from D --to D` backfills past days, each as of that day's end;
interrupted runs are safe to re-run). A backfill reads each shard once per pass of days; these
tests prove that this gives exactly the rows of one `run_rebuild` per day.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.compute.backfill import day_as_of, days_between, run_backfill
from agents.compute.rebuild import RebuildOptions, run_rebuild
from agents.core.records import Market
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import connect, insert_markets, insert_trade_rows, migrate
from agents.store.schema import FEATURE_ROW_KEYS
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

WALLETS = 800
COMPUTED_AT = 1_000.0
# The data ends 2026-11-01T00:00:00Z: the last days of October, some wallets coming and going.
DAYS = days_between(date(2026, 10, 22), date(2026, 10, 31))
assert day_as_of(DAYS[-1]) == DEFAULT_END - 1


@pytest.fixture(scope="module")
def trades_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backfill") / "trades.db"
    dataset = generate(GenerateOptions(wallets=WALLETS, days=120, seed=11, end=DEFAULT_END))
    with closing(connect(path)) as conn:
        migrate(conn)
        insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
        insert_trade_rows(conn, dataset.trade_rows())
    return path


def copy(trades_db: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(trades_db, tmp_path / f"{name}.db"))


def bits(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row with every float as its exact bit pattern (so 0.0 ≠ -0.0, NaN == NaN)."""
    return tuple(value.hex() if isinstance(value, float) else value for value in row)


def rows_of(path: Path, computed_at: bool = True) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    keys = [key for key in FEATURE_ROW_KEYS if computed_at or key != "computed_at"]
    with closing(connect(path)) as conn:
        rows = conn.execute(f"SELECT {', '.join(keys)} FROM wallet_features")
        return {(row[0], row[1], row[2]): bits(row) for row in rows}


def test_a_backfill_is_the_daily_rebuild_of_each_day(trades_db: Path, tmp_path: Path) -> None:
    single, serial, parallel = (copy(trades_db, tmp_path, n) for n in ("1", "2", "3"))
    published_single: list[tuple[Any, ...]] = []
    for day in DAYS:
        options = RebuildOptions(day_as_of(day), parallel=False, computed_at=COMPUTED_AT)
        published_single += map(bits, run_rebuild(single, options).rows_to_publish)
    expected = rows_of(single)
    assert len(expected) > 3 * WALLETS * len(DAYS) * 0.8

    published: list[tuple[Any, ...]] = []

    def publish(rows: Sequence[tuple[Any, ...]]) -> int:
        published.extend(map(bits, rows))
        return len(rows)

    last = day_as_of(DAYS[-1])
    run_backfill(
        serial, DAYS, RebuildOptions(last, parallel=False, shard_wallets=300,
                                     computed_at=COMPUTED_AT), days_per_pass=4,
    )  # fmt: skip
    options = RebuildOptions(last, workers=2, shard_wallets=200, computed_at=COMPUTED_AT)
    result = run_backfill(parallel, DAYS, options, publish=publish, days_per_pass=3)
    assert result.workers == 2 and not result.fallback_shards and not result.failed
    assert rows_of(serial) == expected
    assert rows_of(parallel) == expected
    # Before storage too (SQLite folds -0.0 into 0.0): what is published, day by day.
    assert sorted(published) == sorted(published_single)
    assert [row[1] for row in published] == sorted(row[1] for row in published)  # oldest first


def _start(db: Path, *argv: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "rebuild", "--no-publish", "--json",
         "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), *argv],
        env={**env, "PERSONAS_DB": str(db)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its process pool too: the kill takes the whole group
    )  # fmt: skip


def _recorded(db: Path) -> dict[str, int]:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return dict(conn.execute("SELECT feature_date, rows_written FROM rebuild_runs"))
    except sqlite3.OperationalError:  # not migrated yet
        return {}


def test_a_killed_backfill_resumes_to_the_rows_of_one_run(trades_db: Path, tmp_path: Path) -> None:
    reference, killed = copy(trades_db, tmp_path, "reference"), copy(trades_db, tmp_path, "killed")
    out, err = _start(reference).communicate(timeout=300)
    assert orjson.loads(out)["computed"] == len(DAYS), err.decode()
    expected = rows_of(reference, computed_at=False)

    proc = _start(killed)
    wait_until(lambda: len(_recorded(killed)) >= 1, 120, "a first day recorded", poll=0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    recorded = _recorded(killed)
    assert 1 <= len(recorded) < len(DAYS), "the backfill finished before its kill"
    # Whole days: every recorded day has all its rows, and no other day has any.
    partial = rows_of(killed, computed_at=False)
    assert {date for _, date, _ in partial} == set(recorded)
    assert partial == {key: row for key, row in expected.items() if key[1] in recorded}
    assert sum(recorded.values()) == len(partial)

    out, err = _start(killed).communicate(timeout=300)
    summary = orjson.loads(out)
    assert (summary["skipped"], summary["computed"]) == (
        len(recorded), len(DAYS) - len(recorded),
    ), err.decode()  # fmt: skip
    assert rows_of(killed, computed_at=False) == expected
    with closing(sqlite3.connect(killed)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
