"""Storage: idempotent writes and the batch-beats-on-demand precedence, enforced in SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.core.features import DAY, Fill, wallet_features
from agents.core.records import FeatureSet, Source, build_feature_set
from agents.core.rules import Classification, classify
from agents.store import Classified, connect, migrate, write_classified
from config.thresholds import RuleThresholds

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
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(tmp_path / "personas.db")
    migrate(connection)
    yield connection
    connection.close()


def stored(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    features = conn.execute(
        "SELECT source, realized_pnl FROM wallet_features WHERE proxy_wallet = ?", (WALLET,)
    ).fetchall()
    classifications = conn.execute(
        "SELECT features_source, reason FROM wallet_classifications WHERE proxy_wallet = ?",
        (WALLET,),
    ).fetchall()
    return features, classifications


def test_migrate_is_idempotent(conn: sqlite3.Connection) -> None:
    assert migrate(conn) == migrate(conn)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_on_demand_never_overwrites_batch(conn: sqlite3.Connection) -> None:
    batch = classified("batch", 0.2)
    write_classified(conn, [batch], NOW)
    write_classified(conn, [classified("on_demand", -0.2)], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_batch_overwrites_on_demand(conn: sqlite3.Connection) -> None:
    write_classified(conn, [classified("on_demand", -0.2)], NOW)
    batch = classified("batch", 0.2)
    write_classified(conn, [batch], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_on_demand_overwrites_on_demand(conn: sqlite3.Connection) -> None:
    write_classified(conn, [classified("on_demand", 0.2)], NOW)
    later = classified("on_demand", -0.2)
    write_classified(conn, [later], NOW)
    features, _ = stored(conn)
    assert features == [("on_demand", pytest.approx(later.features.realized_pnl))]


def test_precedence_inside_one_batch(conn: sqlite3.Connection) -> None:
    batch = classified("batch", 0.2)
    write_classified(conn, [batch, classified("on_demand", -0.2)], NOW)
    features, classifications = stored(conn)
    assert features == [("batch", pytest.approx(batch.features.realized_pnl))]
    assert classifications == [("batch", batch.result.reason)]


def test_rewriting_the_same_input_adds_no_row(conn: sqlite3.Connection) -> None:
    item = classified("on_demand", 0.2)
    for _ in range(3):
        write_classified(conn, [item], NOW)
    counts = [
        conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("wallet_features", "wallet_classifications")
    ]
    assert counts == [1, 1]


def test_traits_follow_the_winning_classification(conn: sqlite3.Connection) -> None:
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
