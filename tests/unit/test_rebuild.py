"""The rebuild on small hand-made data: which wallets, which trades, failures, the command."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import agents.compute.rebuild as rebuild
import agents.compute.shards as shards
import agents.core.shard_kernel as shard_kernel
from agents.compute.rebuild import RebuildOptions, ShardJob, ShardResult, run_rebuild
from agents.core.checkpoint import Checkpoint, wallet_features_since
from agents.core.columns import FillColumns
from agents.core.errors import BrokerError
from agents.core.features import DAY, WINDOWS, wallet_features
from agents.core.records import MAX_CLOCK_SKEW_S, is_future
from agents.core.shard_kernel import windows_of_columns
from agents.rebuild_agent import cron_expression
from agents.store import connect, fills_for_wallet, migrate
from agents.store.runs import RunState, rebuild_runs
from agents.store.schema import FEATURE_ROW_KEYS
from streams.cli.rebuild import AiokafkaSender, command_rebuild

AS_OF = 1_767_225_600  # 2026-01-01T00:00:00Z
ACTIVE = "0x" + "a" * 40  # trades now and 200 days ago
EDGE = "0x" + "b" * 40  # one trade exactly at as_of − 90 days: inside the 90-day window
STALE = "0x" + "c" * 40  # last trade one second before the 90-day window
FUTURE = "0x" + "d" * 40  # trades only after as_of


def trade(wallet: str, n: int, ts: int, side: str = "BUY", price: float = 0.4) -> tuple[Any, ...]:
    return (f"{wallet[2:8]}-{n}", wallet, f"m{n % 3}", side, 10.0, price, ts)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "personas.db"
    trades = [
        trade(ACTIVE, 0, AS_OF - 200 * DAY),
        trade(ACTIVE, 1, AS_OF - 10 * DAY),
        trade(ACTIVE, 2, AS_OF - 9 * DAY, "SELL", 0.6),
        trade(ACTIVE, 3, AS_OF),
        trade(ACTIVE, 4, AS_OF + 1),  # after as_of: ignored everywhere
        trade(EDGE, 0, AS_OF - 90 * DAY),
        trade(STALE, 0, AS_OF - 90 * DAY - 1),
        trade(FUTURE, 0, AS_OF + 60),
    ]
    conn = connect(path)
    migrate(conn)
    conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", trades)
    conn.execute("INSERT INTO markets VALUES ('m0', 'Sports')")
    conn.close()
    yield path


def stored(path: Path) -> dict[tuple[str, int], tuple[Any, ...]]:
    conn = connect(path)
    try:
        rows = conn.execute(f"SELECT {', '.join(FEATURE_ROW_KEYS)} FROM wallet_features").fetchall()
    finally:
        conn.close()
    return {(row[0], row[2]): row for row in rows}


def test_cron_expression() -> None:
    assert cron_expression("03:00") == "0 3 * * *"
    assert cron_expression("23:45") == "45 23 * * *"


def test_active_wallets_follow_the_90_day_window(db: Path) -> None:
    conn = connect(db)
    try:
        assert rebuild.active_wallets(conn, AS_OF, 90) == [ACTIVE, EDGE]
    finally:
        conn.close()


def test_rows_are_the_kernels_with_full_history(db: Path) -> None:
    result = run_rebuild(db, RebuildOptions(AS_OF, parallel=False, computed_at=5.0))
    rows = stored(db)
    assert result.wallets == 2 and result.rows_written == 2 * len(WINDOWS) == len(rows)
    conn = connect(db)
    try:
        for wallet in (ACTIVE, EDGE):
            windows, lifetime = wallet_features(fills_for_wallet(conn, wallet, AS_OF), AS_OF)
            for days in WINDOWS:
                row = dict(zip(FEATURE_ROW_KEYS, rows[wallet, days], strict=True))
                assert row["source"] == "batch" and row["as_of"] == AS_OF
                assert row["feature_date"] == "2026-01-01" and row["computed_at"] == 5.0
                assert row["trade_count"] == windows[days].trade_count
                assert row["total_trades"] == lifetime.total_trades
    finally:
        conn.close()
    # Lifetime reaches 200 days back; the trade after as_of counts nowhere.
    assert dict(zip(FEATURE_ROW_KEYS, rows[ACTIVE, 90], strict=True))["total_trades"] == 4
    assert dict(zip(FEATURE_ROW_KEYS, rows[ACTIVE, 7], strict=True))["trade_count"] == 1
    assert [row[2] for row in result.rows_to_publish] == [30, 30]


def test_a_rebuild_records_its_day_in_the_transaction_of_its_rows(db: Path) -> None:
    run_rebuild(db, RebuildOptions(AS_OF, parallel=False, computed_at=5.0))
    conn = connect(db)
    try:
        assert rebuild_runs(conn, "2026-01-01", "2026-01-01") == {
            "2026-01-01": RunState(AS_OF, None)
        }
        assert conn.execute("SELECT wallets, rows_written FROM rebuild_runs").fetchall() == [(2, 6)]
    finally:
        conn.close()


def test_options_reject_a_publish_window_not_computed() -> None:
    with pytest.raises(ValueError, match="publish window"):
        RebuildOptions(AS_OF, windows=(7, 90), publish_window=30)


def crash_on_first_shard(job: ShardJob) -> ShardResult:
    """A worker process that dies (as if killed) on shard 0; importable by forkserver workers."""
    if job.index == 0:
        os._exit(3)
    return shards.worker_shard(job)


def test_a_dead_worker_falls_back_to_serial_for_its_shard(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serial = run_rebuild(db, RebuildOptions(AS_OF, parallel=False, computed_at=1.0))
    expected = stored(db)
    options = RebuildOptions(AS_OF, workers=2, shard_wallets=1, computed_at=1.0)
    result = run_rebuild(db, options, shard_function=crash_on_first_shard)
    assert 0 in result.fallback_shards and not result.failed_wallets
    assert result.wallets == serial.wallets and stored(db) == expected
    assert ACTIVE in caplog.text  # the wallets involved are logged


def test_a_wallet_that_fails_is_skipped_and_reported(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def kernel(checkpoint: Checkpoint, fills: Any, as_of: int, windows: Any = WINDOWS) -> Any:
        # the shard fails, then its wallet-by-wallet fallback loses this wallet only
        if fills and fills[0].trade_id.startswith(EDGE[2:8]):
            raise ZeroDivisionError("bad wallet")
        return wallet_features_since(checkpoint, fills, as_of, windows)

    def failing_shard(columns: FillColumns, wallets: Any, windows: Any) -> Any:
        if any(columns.trade_ids[rows[0]].startswith(EDGE[2:8]) for rows, _ in wallets if rows):
            raise ZeroDivisionError("bad wallet")
        return windows_of_columns(columns, wallets, windows)

    monkeypatch.setattr(shards, "wallet_features_since", kernel)
    monkeypatch.setattr(shard_kernel, "windows_of_columns", failing_shard)
    result = run_rebuild(db, RebuildOptions(AS_OF, parallel=False))
    assert result.failed_wallets == [EDGE] and result.fallback_shards == [0]
    assert {wallet for wallet, _ in stored(db)} == {ACTIVE}
    conn = connect(db)
    try:  # not complete, so not recorded: a backfill of the day recomputes it
        assert rebuild_runs(conn, "2026-01-01", "2026-01-01") == {}
    finally:
        conn.close()


def args(db: Path, tmp_path: Path, *extra: str) -> argparse.Namespace:
    config = tmp_path / "test.toml"
    config.write_text(f'[database]\nurl = "{db}"\n')
    values = {"config": config, "json": True, "as_of": str(AS_OF), "no_publish": False,
              "from_day": None, "to_day": None, "force": False, "dry_run": False,
              "status": False, "distributed": False}  # fmt: skip
    for flag in extra:
        values[flag] = True
    return argparse.Namespace(**values)


def test_command_no_publish_prints_a_summary(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command_rebuild(args(db, tmp_path, "no_publish")) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["wallets"] == 2 and summary["rows_written"] == 6
    assert summary["published"] == 0 and set(summary["phases_s"]) == {
        "read_compute", "write", "publish",
    }  # fmt: skip


def test_command_without_a_broker_fails_before_computing(db: Path, tmp_path: Path) -> None:
    with pytest.raises(BrokerError):
        command_rebuild(args(db, tmp_path))
    assert stored(db) == {}


def test_a_rebuild_in_the_future_warns_that_it_finds_nothing(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    future = args(db, tmp_path, "no_publish")
    future.as_of = "2099-01-01"
    assert command_rebuild(future) == 0
    out, err = capsys.readouterr()
    assert orjson.loads(out)["wallets"] == 0
    assert "--as-of 2099-01-01T00:00:00+00:00 is in the future" in err
    assert "no wallet has a trade in the 90 days up to 2099-01-01" in err


def test_the_summary_says_whose_the_rebuild_metrics_are(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = args(db, tmp_path, "no_publish")
    text.json = False
    assert command_rebuild(text) == 0
    assert "personas_rebuild_* metrics describe its own daily rebuild" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("offset", "future"), [(0, False), (MAX_CLOCK_SKEW_S, False), (MAX_CLOCK_SKEW_S + 1, True)]
)
def test_is_future_allows_the_clock_skew(offset: int, future: bool) -> None:
    assert is_future(1_000_000 + offset, 1_000_000.0) is future


class FakeProducer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
    ) -> str:
        self.calls.append((topic, value, key, partition, headers))
        return "receipt"


async def test_the_rebuild_sender_hands_aiokafka_its_arguments_by_name() -> None:
    producer = FakeProducer()
    sender = AiokafkaSender(producer)
    receipt: Any = await sender.send("wallet-features", b"key", b"value")
    assert receipt == "receipt"
    await sender.send("wallet-features", None, b"v", [("h", b"1")])
    await sender.send("rebuild-jobs", b"k", b"job", partition=3)
    assert producer.calls == [
        ("wallet-features", b"value", b"key", None, None),
        ("wallet-features", b"v", None, None, [("h", b"1")]),
        ("rebuild-jobs", b"job", b"k", 3, None),
    ]
