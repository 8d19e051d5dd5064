"""The store contract, on SQLite and PostgreSQL alike: idempotent writes, the batch-beats-on-demand
precedence enforced in SQL, exact round trips, one migration at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from agents.core.errors import StoreError
from agents.core.features import DAY, Fill, wallet_features
from agents.core.records import FeatureSet, Market, Source, build_feature_set
from agents.core.rules import Classification, classify
from agents.store import (
    Classified,
    Connection,
    connect,
    feature_row,
    fills_by_wallet,
    insert_markets,
    insert_trade_rows,
    migrate,
    open_reader,
    transaction,
    write_classified,
)
from agents.store.checkpoints import columns_since, fills_since
from agents.store.connection import snapshot
from agents.store.schema import FEATURE_ROW_KEYS, SCHEMA_VERSION
from agents.store.tables import wallet_fills
from config.thresholds import RuleThresholds
from tests.conftest import on_both_stores

pytestmark = on_both_stores

WALLET = "0x" + "1" * 40
AS_OF = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = AS_OF + DAY  # when the classifier stores a batch


def fills(profit: float) -> list[Fill]:
    """Six winning (or losing) round trips inside the 30-day window."""
    out = []
    for n in range(6):
        ts = AS_OF - (n + 1) * DAY
        out.append(Fill(f"b{n}", f"m{n}", "BUY", 10.0, 0.4, ts, "Sports"))
        out.append(Fill(f"s{n}", f"m{n}", "SELL", 10.0, 0.4 + profit, ts + 3600, "Sports"))
    return out


def classified(source: Source, profit: float) -> Classified:
    windows, lifetime = wallet_features(fills(profit), AS_OF, (30,))
    features = build_feature_set(WALLET, 30, AS_OF, source, windows[30], lifetime, 1.0)
    result = classify(WALLET, windows[30], lifetime, RuleThresholds(), frozenset())
    return Classified(features, result)


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    connection = connect(database_url)
    migrate(connection)
    yield connection
    connection.close()


def stored(conn: Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    features = conn.execute(
        "SELECT source, realized_pnl FROM wallet_features WHERE proxy_wallet = ?", (WALLET,)
    ).fetchall()
    classifications = conn.execute(
        "SELECT features_source, reason FROM wallet_classifications WHERE proxy_wallet = ?",
        (WALLET,),
    ).fetchall()
    return features, classifications


def test_migrate_is_idempotent(conn: Connection) -> None:
    assert migrate(conn) == migrate(conn) == conn.schema_version() == SCHEMA_VERSION


def test_workers_migrating_at_once_apply_each_migration_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def start_worker() -> None:
        try:
            with closing(connect(database_url)) as own:
                migrate(own)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start_worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with closing(connect(database_url)) as check:
        assert check.schema_version() == SCHEMA_VERSION


def test_a_newer_schema_is_refused(conn: Connection) -> None:
    with transaction(conn):
        conn.set_schema_version(SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this program"):
        migrate(conn)


def test_trades_are_stored_once_and_counted_as_new_once(conn: Connection) -> None:
    rows = [(f"t{n}", WALLET, "m1", "BUY", 1.0 + n, 0.5, AS_OF - n) for n in range(5)]
    assert insert_trade_rows(conn, rows) == 5
    assert insert_trade_rows(conn, rows + rows[:2]) == 0  # duplicates, inside a batch too
    assert insert_trade_rows(conn, [*rows, ("t9", WALLET, "m1", "SELL", 2.0, 0.7, AS_OF)]) == 1
    assert conn.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 6


def test_values_round_trip_to_the_last_bit(conn: Connection) -> None:
    awkward = [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, 0.30000000000000004]
    rows = [(f"t{n}", WALLET, "m1", "BUY", size, 0.5, AS_OF - n) for n, size in enumerate(awkward)]
    insert_trade_rows(conn, rows)
    [(_, fills_read)] = list(fills_by_wallet(conn, [WALLET, "0x" + "2" * 40], AS_OF))
    assert sorted(fill.size for fill in fills_read) == sorted(awkward)
    item = classified("batch", 0.2)
    write_classified(conn, [item], NOW)
    columns = ", ".join(FEATURE_ROW_KEYS)
    row = conn.execute(f"SELECT {columns} FROM wallet_features").fetchone()
    assert tuple(row) == feature_row(item.features)


def test_a_snapshot_reads_one_state_of_the_store(conn: Connection, database_url: str) -> None:
    def trade(n: int) -> tuple[object, ...]:
        return (f"t{n}", WALLET, "m1", "BUY", 1.0, 0.5, AS_OF - n)

    count = "SELECT COUNT(*) FROM trades"
    insert_trade_rows(conn, [trade(1)])
    with closing(open_reader(database_url)) as reader:
        with snapshot(reader):
            before = reader.execute(count).fetchone()[0]
            insert_trade_rows(conn, [trade(2)])  # committed by the writer between the two reads
            during = reader.execute(count).fetchone()[0]
        after = reader.execute(count).fetchone()[0]
    assert (before, during, after) == (1, 1, 2)


def test_a_reader_cannot_write(conn: Connection, database_url: str) -> None:
    with closing(open_reader(database_url)) as reader:
        assert reader.schema_version() == SCHEMA_VERSION
        with pytest.raises(Exception, match=r"(?i)read.only|readonly"):
            reader.execute("INSERT INTO markets (condition_id, category) VALUES (?, ?)", ("m", "x"))


def test_on_demand_never_overwrites_batch(conn: Connection) -> None:
    batch = classified("batch", 0.2)
    write_classified(conn, [batch], NOW)
    write_classified(conn, [classified("on_demand", -0.2)], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_batch_overwrites_on_demand(conn: Connection) -> None:
    write_classified(conn, [classified("on_demand", -0.2)], NOW)
    batch = classified("batch", 0.2)
    write_classified(conn, [batch], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_on_demand_overwrites_on_demand(conn: Connection) -> None:
    write_classified(conn, [classified("on_demand", 0.2)], NOW)
    later = classified("on_demand", -0.2)
    write_classified(conn, [later], NOW)
    features, _ = stored(conn)
    assert features == [("on_demand", pytest.approx(later.features.realized_pnl))]


def test_precedence_inside_one_batch(conn: Connection) -> None:
    batch = classified("batch", 0.2)
    write_classified(conn, [batch, classified("on_demand", -0.2)], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_rewriting_the_same_input_adds_no_row(conn: Connection) -> None:
    item = classified("on_demand", 0.2)
    for _ in range(3):
        write_classified(conn, [item], NOW)
    counts = [
        conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("wallet_features", "wallet_classifications")
    ]
    assert counts == [1, 1]


def test_traits_follow_the_winning_classification(conn: Connection) -> None:
    batch = classified("batch", 0.2)
    write_classified(conn, [batch], NOW)
    before = conn.execute("SELECT trait, value FROM wallet_traits ORDER BY trait").fetchall()
    fake = Classification(
        status="excluded", persona=None, reason="RECENT_LOSS", stage="1.5", metric_value=-1.0,
        threshold=0.0, confidence=None, traits=(("ON_DEMAND_ONLY", None),), rules_version="x",
    )  # fmt: skip
    on_demand: FeatureSet = batch.features.model_copy(update={"source": "on_demand"})
    write_classified(conn, [Classified(on_demand, fake)], NOW)
    after = conn.execute("SELECT trait, value FROM wallet_traits ORDER BY trait").fetchall()
    assert after == before


def test_both_reads_give_each_wallet_its_fills_with_their_categories(conn: Connection) -> None:
    other = "0x" + "2" * 40
    insert_markets(conn, [Market(condition_id="m1", category="Sports")])
    rows = [
        ("t1", WALLET, "m1", "BUY", 2.0, 0.5, AS_OF - 3),
        ("t2", WALLET, "m9", "SELL", 1.0, 0.75, AS_OF - 2),
        ("t3", other, "m1", "BUY", 3.0, 0.25, AS_OF - 1),
        ("t4", WALLET, "m1", "SELL", 1.5, 0.5, AS_OF + 1),  # after as_of: in neither read
    ]
    insert_trade_rows(conn, rows)
    expected = {
        wallet: sorted(
            Fill(t, m, side, size, price, ts, "Sports" if m == "m1" else "unknown")
            for t, w, m, side, size, price, ts in rows
            if w == wallet and ts <= AS_OF
        )
        for wallet in (WALLET, other)
    }
    by_wallet = dict(fills_by_wallet(conn, [WALLET, other, "0x" + "3" * 40], AS_OF))
    since = fills_since(conn, [(WALLET, AS_OF - 2), (other, 0)], AS_OF)
    assert {w: sorted(fs) for w, fs in by_wallet.items()} == expected
    assert {w: sorted(fs) for w, fs in since.items()} == {
        WALLET: expected[WALLET][1:],
        other: expected[other],
    }
    assert all(type(f) is Fill for fs in [*by_wallet.values(), *since.values()] for f in fs)
    assert list(wallet_fills([], {})) == []
    # The rebuild's shards read the same trades as columns, each wallet in canonical order.
    columns, runs = columns_since(conn, [(WALLET, AS_OF - 2), (other, 0)], AS_OF)
    in_order = columns.canonical_rows(runs)
    assert {w: columns.fills(r) for w, r in in_order.items()} == {
        WALLET: expected[WALLET][1:],
        other: expected[other],
    }
    fills = columns.every_fill()
    assert all(type(f.size) is float and type(f.price) is float for f in fills)
    assert all(type(f.timestamp) is int for f in fills)
