"""The worker's /metrics and /health, and a replay that rewrites the same rows (SPEC §10)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.core.records import WalletDiscovered
from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import connect
from config.settings import Settings
from streams.cli import main
from streams.topics import stage_group
from tests.conftest import wait_until
from tests.integration.checks import count, prepare_scenario
from tests.integration.kafka import publish
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def load(bootstrap: str, settings: Settings, wallets: int, seed: int) -> tuple[int, list[str]]:
    """Stored markets, published trades; returns (trade count, wallets)."""
    options = GenerateOptions(wallets=wallets, days=90, seed=seed, end=DEFAULT_END)
    scenario = prepare_scenario(bootstrap, settings, options, "test")
    scenario.conn.close()
    publish(bootstrap, settings, settings.topics.trades, scenario.trades)
    return len(scenario.trades), scenario.dataset.wallets


def discover(bootstrap: str, settings: Settings, wallets: list[str]) -> None:
    events = [
        WalletDiscovered(proxy_wallet=w, discovered_at=DEFAULT_END, source="t") for w in wallets
    ]
    publish(bootstrap, settings, settings.topics.discovered, events)


def test_metrics_and_health(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {**isolated_env, "PERSONAS_WORKER__LAG_CHECK_INTERVAL_S": "1.0"}
    trades, wallets = load(bootstrap, settings, wallets=60, seed=5)
    with (
        closing(connect(settings.database.url)) as conn,
        WorkerProcess(env, bootstrap, tmp_path / "worker.log") as worker,
    ):
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == trades, 60, "trades")
        discover(bootstrap, settings, wallets)
        done = "SELECT COUNT(*) FROM wallets WHERE on_demand_status IS NOT NULL"
        wait_until(lambda: count(conn, done) == len(wallets), 60, "every discovery")
        success = count(conn, "SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'success'")
        classified = "SELECT COUNT(*) FROM wallet_classifications"
        wait_until(lambda: count(conn, classified) == success, 30, "classifications")

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            status, body = fetch(worker.port, "/metrics")
            assert status == 200, body
            return samples(body)

        partition = (
            ("group", stage_group(settings.worker.app_id, "classifier")), ("partition", "0"),
            ("topic", settings.topics.features),
        )  # fmt: skip
        lag_key = ("personas_consumer_lag_messages", partition)
        wait_until(lambda: scraped().get(lag_key) == 0.0, 30, "the lag gauge at 0")
        metrics = scraped()
        outcome = "personas_on_demand_features_total"
        assert metrics[(outcome, (("status", "success"),))] == success
        assert metrics[(outcome, (("status", "insufficient"),))] == len(wallets) - success
        assert metrics[("personas_trades_ingested_total", (("result", "stored"),))] == trades
        assert metrics[("personas_classifier_batch_size_sum", ())] == success
        assert metrics[("personas_on_demand_features_duration_seconds_count", ())] == len(wallets)

        status, body = fetch(worker.port, "/health")
        assert status == 200, body
        assert json.loads(body)["healthy"] is True
        assert worker.stop() == 0


def test_replay_to_earliest_rewrites_the_same_rows(
    bootstrap: str,
    isolated_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trades, wallets = load(bootstrap, settings, wallets=60, seed=6)
    columns = "proxy_wallet, feature_date, status, persona, reason, metric_value, confidence"
    snapshot = f"SELECT {columns} FROM wallet_classifications ORDER BY proxy_wallet"
    with closing(connect(settings.database.url)) as conn:
        with WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
            stored = "SELECT COUNT(*) FROM trades"
            wait_until(lambda: count(conn, stored) == trades, 60, "trades stored")
            discover(bootstrap, settings, wallets)
            done = "SELECT COUNT(*) FROM wallets WHERE on_demand_status IS NOT NULL"
            wait_until(lambda: count(conn, done) == len(wallets), 90, "every discovery")
            success = "SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'success'"
            classified = "SELECT COUNT(*) FROM wallet_classifications"
            wait_until(lambda: count(conn, classified) == count(conn, success), 30, "classified")
            assert worker.stop() == 0
        before = conn.execute(snapshot).fetchall()
        assert len(before) > len(wallets) // 2
        features_before = count(conn, "SELECT COUNT(*) FROM wallet_features")
        replayed_after = conn.execute("SELECT MAX(classified_at) FROM wallet_classifications")
        since = replayed_after.fetchone()[0]

        group, topic = stage_group(settings.worker.app_id, "features"), settings.topics.discovered
        assert main(["replay", "--group", group, "--topic", topic, "--to", "earliest"]) == 0
        capsys.readouterr()

        with WorkerProcess(isolated_env, bootstrap, tmp_path / "again.log") as worker:
            again = "SELECT COUNT(*) FROM wallet_classifications WHERE classified_at > ?"
            wait_until(lambda: count(conn, again, since) == len(before), 90, "reclassified")
            assert worker.stop() == 0
        assert conn.execute(snapshot).fetchall() == before
        assert count(conn, "SELECT COUNT(*) FROM wallet_features") == features_before
        assert count(conn, "SELECT COUNT(*) FROM trades") == trades
