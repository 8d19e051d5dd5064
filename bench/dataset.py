"""The benchmark database: generated once, deterministically, and cached under `bench/data/`."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from agents.core.records import Market
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import connect, insert_markets, insert_trade_rows, migrate

__all__ = ["BenchData", "bench_database", "copied", "fresh_copy"]

log = logging.getLogger("bench")

BATCH = 50_000

#: every table a rebuild, the stream or a run writes; only `trades` and `markets` are data
DERIVED = (
    "wallet_features", "wallet_classifications", "wallet_traits", "wallets",
    "wallet_checkpoints", "rebuild_runs", "rebuild_job_runs", "rebuild_job_shards",
)  # fmt: skip


@dataclass(frozen=True)
class BenchData:
    """A cached database and what it holds."""

    path: Path
    wallets: int
    days: int
    seed: int
    as_of: int
    trades: int


def bench_database(
    data_dir: Path, wallets: int = 20_000, days: int = 120, seed: int = 1
) -> BenchData:
    """The database for these options: built on first use (written aside, then renamed)."""
    path = data_dir / f"trades-w{wallets}-d{days}-s{seed}.db"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        for leftover in data_dir.glob(partial.name + "*"):
            leftover.unlink()
        started = time.perf_counter()
        print(f"building {path.name} (once; cached) …", flush=True)
        _build(partial, GenerateOptions(wallets=wallets, days=days, seed=seed, end=DEFAULT_END))
        os.replace(partial, path)
        print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    with closing(connect(path)) as conn:
        trades = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    return BenchData(path, wallets, days, seed, DEFAULT_END, trades)


def _build(path: Path, options: GenerateOptions) -> None:
    dataset = generate(options)
    with closing(connect(path)) as conn:
        migrate(conn)
        insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
        # One transaction per batch keeps the WAL from growing to the whole data set.
        batch: list[tuple[object, ...]] = []
        for row in dataset.trade_rows():
            batch.append(row)
            if len(batch) >= BATCH:
                insert_trade_rows(conn, batch)
                batch.clear()
        insert_trade_rows(conn, batch)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")


def copied(source: Path, target: Path) -> Path:
    """`source` copied to `target` and flushed to disk: otherwise the first commit measured on
    the copy, whose WAL checkpoint syncs the file, also writes back the copy's hundreds of MB
    (it doubled the rebuild's write, and made the 600-day history look 1.5× slower)."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as file:
        os.fsync(file.fileno())
    return target


def fresh_copy(source: Path, target: Path) -> Path:
    """A copy of a bench database without any derived row: no feature, no checkpoint, no run."""
    copied(source, target)
    with closing(sqlite3.connect(target)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        for table in DERIVED:
            if table in tables:
                conn.execute(f"DELETE FROM {table}")
        conn.commit()
    return target
