"""Serial rebuild == parallel rebuild == on-demand path, bit for bit; precedence; re-runs.

On generated data with several thousand wallets (SPEC §5: "for the same trades and as_of the two
must be equal to the last bit"; §6: batch is authoritative; §9: interrupted runs re-run safely).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agents.compute.rebuild import RebuildOptions, RebuildResult, run_rebuild
from agents.core.features import WINDOWS, wallet_features
from agents.core.records import Market, build_feature_set
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import (
    connect,
    feature_row,
    fills_for_wallet,
    insert_markets,
    insert_trade_rows,
    migrate,
    upsert_feature_rows,
)
from agents.store.schema import FEATURE_ROW_KEYS

WALLETS = 1500
AS_OF = DEFAULT_END
COMPUTED_AT = 1_000.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trades_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated database (trades and markets only), built once for the module."""
    path = tmp_path_factory.mktemp("rebuild") / "trades.db"
    dataset = generate(GenerateOptions(wallets=WALLETS, days=120, seed=5, end=AS_OF))
    with closing(connect(path)) as conn:
        migrate(conn)
        insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
        insert_trade_rows(conn, dataset.trade_rows())
    return path


@pytest.fixture
def db(trades_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "personas.db"
    shutil.copy(trades_db, path)
    return path


def rows_of(path: Path, source: str | None = None) -> dict[tuple[str, int], tuple[Any, ...]]:
    where = "" if source is None else f" WHERE source = '{source}'"
    with closing(connect(path)) as conn:
        rows = conn.execute(f"SELECT {', '.join(FEATURE_ROW_KEYS)} FROM wallet_features{where}")
        return {(row[0], row[2]): row for row in rows}


def bits(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row with every float as its exact bit pattern (so 0.0 ≠ -0.0, NaN == NaN)."""
    return tuple(value.hex() if isinstance(value, float) else value for value in row)


def on_demand_rows(path: Path, wallets: Iterable[str]) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The on-demand path for each wallet: its own query, the kernel, a FeatureSet, a row."""
    out = {}
    with closing(connect(path)) as conn:
        for wallet in wallets:
            windows, lifetime = wallet_features(
                fills_for_wallet(conn, wallet, AS_OF), AS_OF, WINDOWS
            )
            for days in WINDOWS:
                fs = build_feature_set(
                    wallet, days, AS_OF, "batch", windows[days], lifetime, COMPUTED_AT
                )
                out[wallet, days] = feature_row(fs)
    return out


def rebuild(path: Path, parallel: bool) -> RebuildResult:
    options = RebuildOptions(
        AS_OF, parallel=parallel, workers=2, shard_wallets=400, computed_at=COMPUTED_AT
    )
    return run_rebuild(path, options)


def test_serial_parallel_and_on_demand_are_bit_equal(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "parallel.db"
    shutil.copy(db, other)
    serial = rebuild(db, parallel=False)
    parallel = rebuild(other, parallel=True)
    assert parallel.workers == 2 and not parallel.fallback_shards
    assert serial.wallets == parallel.wallets > WALLETS * 0.9

    serial_rows, parallel_rows = rows_of(db), rows_of(other)
    assert len(serial_rows) == serial.rows_written == serial.wallets * len(WINDOWS)
    assert {key: bits(row) for key, row in serial_rows.items()} == {
        key: bits(row) for key, row in parallel_rows.items()
    }

    # Before storage (SQLite folds -0.0 into 0.0): the published rows themselves.
    expected = on_demand_rows(db, [row[0] for row in serial.rows_to_publish])
    for result in (serial, parallel):
        assert [bits(row) for row in result.rows_to_publish] == [
            bits(expected[row[0], 30]) for row in result.rows_to_publish
        ]
    # After storage: every wallet and window, stored the same way.
    stored_on_demand = tmp_path / "on_demand.db"
    with closing(connect(stored_on_demand)) as conn:
        migrate(conn)
        upsert_feature_rows(conn, on_demand_rows(db, sorted({w for w, _ in serial_rows})).values())
    assert {k: bits(r) for k, r in rows_of(stored_on_demand).items()} == {
        k: bits(r) for k, r in serial_rows.items()
    }


def test_on_demand_writes_never_replace_batch_rows(db: Path) -> None:
    rebuild(db, parallel=True)
    before = rows_of(db)
    wallets = sorted({wallet for wallet, _ in before})[:500]
    # Discoveries later the same UTC day: the on-demand rows share the batch rows' keys.
    later = AS_OF + 3600
    with closing(connect(db)) as conn:
        rows = []
        for wallet in wallets:
            windows, lifetime = wallet_features(fills_for_wallet(conn, wallet, later), later, (30,))
            fs = build_feature_set(wallet, 30, later, "on_demand", windows[30], lifetime, 9e9)
            rows.append(feature_row(fs))
        assert upsert_feature_rows(conn, rows) == 0
    assert rows_of(db) == before


def test_a_rerun_writes_the_same_rows(db: Path) -> None:
    first = rebuild(db, parallel=True)
    before = rows_of(db)
    second = run_rebuild(
        db, RebuildOptions(AS_OF, workers=2, shard_wallets=400, computed_at=COMPUTED_AT + 1)
    )
    after = rows_of(db)
    assert second.rows_written == first.rows_written == len(after) == len(before)

    def without_computed_at(rows: dict[Any, tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
        at = FEATURE_ROW_KEYS.index("computed_at")
        return {key: bits(row[:at] + row[at + 1 :]) for key, row in rows.items()}

    assert without_computed_at(after) == without_computed_at(before)
    assert {row[FEATURE_ROW_KEYS.index("computed_at")] for row in after.values()} == {
        COMPUTED_AT + 1
    }
