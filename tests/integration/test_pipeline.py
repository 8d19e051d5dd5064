"""End to end through the real broker, on each store: trades and discoveries in, classification
rows out."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import orjson
import pytest

from agents.core.features import feature_date, wallet_features
from agents.core.rules import classify
from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import Connection, fills_for_wallet
from config.settings import Settings
from streams.topics import dlq_name
from tests.conftest import on_both_stores, wait_until
from tests.integration.checks import count, prepare_scenario
from tests.integration.kafka import publish, publish_raw, read_topic
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

BAD_TRADES = [
    b"{not json",
    orjson.dumps({"trade_id": "x1", "proxy_wallet": "0x12", "condition_id": "m", "side": "BUY",
                  "size": 1.0, "price": 0.5, "timestamp": 1}),
    orjson.dumps({"trade_id": "x2", "proxy_wallet": "0x" + "a" * 40, "condition_id": "m",
                  "side": "BUY", "size": 1.0, "price": 1.5, "timestamp": 1}),
]  # fmt: skip
BAD_FIELDS = ["<json>", "proxy_wallet", "price"]


def classification_rows(conn: Connection) -> dict[str, tuple[object, ...]]:
    rows = conn.execute(
        "SELECT proxy_wallet, status, persona, reason, stage, metric_value, threshold, confidence,"
        " features_source, rules_version FROM wallet_classifications"
    ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


@on_both_stores
def test_pipeline_classifies_planted_wallets_once(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    options = GenerateOptions(wallets=150, days=90, seed=11, end=DEFAULT_END)
    dataset, trades, discoveries, conn = prepare_scenario(bootstrap, settings, options, "test")
    date = feature_date(DEFAULT_END)
    topics = settings.topics

    with closing(conn), WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
        publish(bootstrap, settings, topics.trades, trades)
        publish_raw(bootstrap, settings, topics.trades, BAD_TRADES)
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == len(trades), 60,
                   "every trade stored")  # fmt: skip

        publish(bootstrap, settings, topics.discovered, discoveries)
        done = "SELECT COUNT(*) FROM wallets WHERE on_demand_at > ?"
        wait_until(lambda: count(conn, done, 0) == len(discoveries), 60, "every discovery")
        succeeded = count(conn, "SELECT COUNT(*) FROM wallets WHERE on_demand_status='success'")
        wait_until(
            lambda: count(conn, "SELECT COUNT(*) FROM wallet_classifications") == succeeded,
            30, "a classification per on-demand success",
        )  # fmt: skip
        first = classification_rows(conn)

        # Every planted label, exactly. Wallets with too few settled trades in the window
        # (pending, and INACTIVE ones) get no on-demand row: the daily rebuild classifies them.
        insufficient = {
            row[0]
            for row in conn.execute(
                "SELECT proxy_wallet FROM wallets WHERE on_demand_status = 'insufficient'"
            )
        }
        for label in dataset.labels:
            if label.status == "pending" or label.behaviour == "INACTIVE":
                assert label.proxy_wallet in insufficient
                assert label.proxy_wallet not in first
                continue
            status, persona, reason = first[label.proxy_wallet][:3]
            assert (status, persona, reason) == (label.status, label.persona, label.reason), label

        # Every row equals a fresh recomputation from the stored trades.
        rules = settings.rules
        for wallet, row in first.items():
            windows, lifetime = wallet_features(
                fills_for_wallet(conn, wallet, DEFAULT_END), DEFAULT_END, (30,)
            )
            expected = classify(wallet, windows[30], lifetime, rules, frozenset(rules.known_bots))
            assert row[:3] == (expected.status, expected.persona, expected.reason)
            assert row[7] == "on_demand"

        # Publishing the same discoveries again rewrites the same rows, adds none.
        replayed_after = conn.execute("SELECT MAX(on_demand_at) FROM wallets").fetchone()[0]
        publish(bootstrap, settings, topics.discovered, discoveries)
        wait_until(lambda: count(conn, done, replayed_after) == len(discoveries), 60,
                   "every discovery processed again")  # fmt: skip
        classified_again = "SELECT COUNT(*) FROM wallet_classifications WHERE classified_at > ?"
        wait_until(lambda: count(conn, classified_again, replayed_after) == succeeded, 30,
                   "every classification rewritten")  # fmt: skip
        assert classification_rows(conn) == first
        assert count(conn, "SELECT COUNT(*) FROM wallet_features") == succeeded
        assert (
            count(conn, "SELECT COUNT(*) FROM wallet_features WHERE feature_date != ?", date) == 0
        )

        assert worker.stop() == 0, worker.log()

    dead = read_topic(bootstrap, dlq_name(topics.trades), expected=len(BAD_TRADES))
    assert sorted(orjson.loads(r.value)["reason"].split(":")[0] for r in dead) == sorted(BAD_FIELDS)
    assert {r.key for r in dead} == {b"bad"}
