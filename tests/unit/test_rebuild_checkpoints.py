"""The rebuild from stored checkpoints (issue 14), on both stores: the rows of a full
recomputation to the last bit, a late trade sends its wallet back to a full read, a checkpoint
keeps every bit through the store, and the Arrow read gives what the row read gives."""

from __future__ import annotations

import random
from contextlib import closing
from typing import Any

from agents.compute.processes import arrow_store, reader, reader_pool
from agents.compute.rebuild import RebuildOptions, run_rebuild
from agents.compute.shards import ShardJob, ShardResult, worker_shard
from agents.core.checkpoint import EMPTY, advance
from agents.core.features import DAY, Fill
from agents.store import Connection, connect, migrate, transaction
from agents.store.arrow import ArrowSnapshot
from agents.store.checkpoints import (
    CHECKPOINTS,
    checkpoint_row,
    checkpointed_columns,
    valid_checkpoints,
)
from agents.store.schema import FEATURE_ROW_KEYS
from tests.conftest import on_both_stores

pytestmark = on_both_stores

DAY1 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY2 = DAY1 + DAY
WALLETS = ["0x" + c * 40 for c in "abc"]


def _history(seed: int = 7) -> list[tuple[Any, ...]]:
    """Trades over 300 days up to DAY2, with awkward prices and sizes (float sums that round)."""
    rnd = random.Random(seed)
    rows = []
    for n in range(240):
        wallet = WALLETS[n % 3]
        ts = DAY2 - rnd.randrange(300 * DAY)
        side = rnd.choice(["BUY", "BUY", "SELL"])
        rows.append((f"t{n:04d}", wallet, f"m{n % 4}", side, rnd.uniform(0.1, 90.0),
                     rnd.uniform(0.01, 0.99), ts))  # fmt: skip
    return rows


def _insert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    with transaction(conn):
        conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _rows(database_url: str, as_of: int) -> list[tuple[Any, ...]]:
    with closing(connect(database_url)) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(FEATURE_ROW_KEYS)} FROM wallet_features WHERE as_of = ?", (as_of,)
        ).fetchall()
    # float.hex: every last bit, and 0.0 told from -0.0
    return sorted(tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows)


def _full(database_url: str, as_of: int) -> list[tuple[Any, ...]]:
    """The rows of `as_of` recomputed with no checkpoint at all."""
    with closing(connect(database_url)) as conn, transaction(conn):
        conn.execute("DELETE FROM wallet_checkpoints")
        conn.execute("DELETE FROM wallet_features")
    run_rebuild(database_url, RebuildOptions(as_of, parallel=False, computed_at=1.0))
    return _rows(database_url, as_of)


def _setup(database_url: str, rows: list[tuple[Any, ...]]) -> None:
    with closing(connect(database_url)) as conn:
        migrate(conn)
        _insert(conn, rows)


def test_a_rebuild_from_yesterdays_checkpoints_writes_the_full_recomputations_bits(
    database_url: str,
) -> None:
    _setup(database_url, _history())
    run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
    with closing(connect(database_url)) as conn:
        assert set(valid_checkpoints(conn, WALLETS, DAY2)) == set(WALLETS)
    run_rebuild(database_url, RebuildOptions(DAY2, parallel=False, computed_at=1.0))
    from_checkpoints = _rows(database_url, DAY2)
    with closing(connect(database_url)) as conn:
        stored = conn.execute("SELECT proxy_wallet, as_of FROM wallet_checkpoints").fetchall()
    assert sorted(stored) == [(wallet, DAY2) for wallet in WALLETS]
    assert len(from_checkpoints) == 9 and from_checkpoints == _full(database_url, DAY2)


def test_a_late_trade_invalidates_its_wallets_checkpoint_and_is_counted(
    database_url: str,
) -> None:
    _setup(database_url, _history())
    run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
    late = ("late", WALLETS[0], "m1", "BUY", 3.0, 0.3, DAY1 - 100 * DAY)
    with closing(connect(database_url)) as conn:
        _insert(conn, [late])
        assert set(valid_checkpoints(conn, WALLETS, DAY2)) == set(WALLETS[1:])
    run_rebuild(database_url, RebuildOptions(DAY2, parallel=False, computed_at=1.0))
    after_late = _rows(database_url, DAY2)
    assert after_late == _full(database_url, DAY2)
    with closing(connect(database_url)) as conn:  # and the next checkpoint holds it
        (total,) = conn.execute(
            "SELECT total_trades FROM wallet_checkpoints WHERE proxy_wallet = ?", (WALLETS[0],)
        ).fetchone()
        (count,) = conn.execute(
            "SELECT count(*) FROM trades WHERE proxy_wallet = ? AND timestamp <= ?",
            (WALLETS[0], DAY2),
        ).fetchone()
    assert total == count


def test_a_checkpoint_keeps_every_bit_through_the_store_and_the_newest_wins(
    database_url: str,
) -> None:
    rows = _history()
    fills = [
        Fill(t[0], t[2], t[3], t[4], t[5], t[6], "unknown") for t in rows if t[1] == WALLETS[0]
    ]
    older = advance(EMPTY, fills, DAY1 - 50 * DAY)
    newer = advance(older, fills, DAY1)
    assert newer.open_lots and newer.buy_cost
    _setup(database_url, rows)
    with closing(connect(database_url)) as conn:
        with transaction(conn):
            conn.bulk_upsert(CHECKPOINTS, [checkpoint_row(WALLETS[0], newer, 1.0)])
        with transaction(conn):  # a backfill of older days: never replaces the newer one
            conn.bulk_upsert(CHECKPOINTS, [checkpoint_row(WALLETS[0], older, 2.0)])
        (read,) = valid_checkpoints(conn, WALLETS, DAY2).values()
        assert valid_checkpoints(conn, WALLETS, DAY1 - 1) == {}  # taken after that as_of
    assert read == newer
    assert read.buy_cost.hex() == newer.buy_cost.hex()
    assert [size.hex() for _, lots in read.open_lots for size, _, _ in lots] == [
        size.hex() for _, lots in newer.open_lots for size, _, _ in lots
    ]


def _canonical_fills(read: Any) -> tuple[Any, dict[str, list[Fill]]]:
    checkpoints, (columns, runs) = read
    return checkpoints, {w: columns.fills(r) for w, r in columns.canonical_rows(runs).items()}


def read_in_a_reader_process(needs: Any, until: int) -> Any:
    """`checkpointed_columns` as a rebuild's reader process reads (importable by them)."""
    return _canonical_fills(checkpointed_columns(arrow_store() or reader(), needs, until))


def test_the_arrow_read_gives_the_rows_read_checkpoints_and_fills(database_url: str) -> None:
    tie = ("tie", WALLETS[1], "m2", "SELL", 0.7, 0.4, DAY2 - 5 * DAY)  # beside one in its second
    _setup(database_url, [*_history(), tie, ("tie0", *tie[1:])])
    run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
    needs = {wallet: (DAY2, DAY2 - 90 * DAY) for wallet in [*WALLETS, "0x" + "f" * 40]}
    with reader_pool(database_url, 5_000, 1, arrow=True) as pool:
        arrow = pool.submit(read_in_a_reader_process, needs, DAY2).result()
    with closing(connect(database_url)) as conn:
        rows = _canonical_fills(checkpointed_columns(conn, needs, DAY2))
    assert arrow == rows and set(rows[0]) == set(WALLETS)
    assert [f.trade_id for f in rows[1][WALLETS[1]] if f.trade_id.startswith("tie")] == [
        "tie",
        "tie0",
    ]
    fills = [f for wallet_fills in arrow[1].values() for f in wallet_fills]
    assert all(type(f.size) is float and type(f.timestamp) is int for f in fills)


def arrow_read_fails(job: ShardJob) -> ShardResult:
    """A reader process whose Arrow read fails, as on a value of an unexpected type."""

    def broken(self: ArrowSnapshot, since: Any, as_of: int) -> Any:
        raise OSError("Type mismatch in column 4: expected DOUBLE but got TEXT")

    ArrowSnapshot.columns_since = broken  # type: ignore[method-assign]
    return worker_shard(job)


def test_a_shard_whose_arrow_read_fails_is_computed_again_on_the_row_path(
    database_url: str,
) -> None:
    _setup(database_url, _history())
    expected = _full(database_url, DAY2)
    with closing(connect(database_url)) as conn, transaction(conn):
        conn.execute("DELETE FROM wallet_features")
    options = RebuildOptions(DAY2, workers=2, shard_wallets=1, computed_at=1.0)
    result = run_rebuild(database_url, options, shard_function=arrow_read_fails)
    assert not result.failed_wallets and result.wallets == len(WALLETS)
    assert result.fallback_shards == [0, 1, 2]
    assert _rows(database_url, DAY2) == expected
