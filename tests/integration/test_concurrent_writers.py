"""Ingest, classifier and a rebuild in another process write at once: never `database is locked`,
and the final rows are right, batch beating on-demand (issue 7: concurrent writers)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from agents.core.records import Market, Trade, WalletDiscovered
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import connect, insert_markets, insert_trade_rows, migrate
from config.settings import Settings
from streams.topics import ensure_topics
from tests.conftest import wait_until
from tests.integration.checks import count, wait_until_classified
from tests.integration.kafka import publish
from tests.integration.test_crash_safety import (
    assert_discoveries_classified_once,
    assert_trades_exactly_once,
)
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

AS_OF = DEFAULT_END
STORED_WALLETS = 1000  # already in the database: what the rebuild chews on
STREAMED_WALLETS = 120  # their trades arrive through the worker while the rebuild runs
REBUILDS = 2


def _rebuild(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "rebuild", "--no-publish", "--json",
         "--as-of", str(AS_OF)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_stream_writers_and_a_rebuild_never_see_a_locked_database(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    stored = generate(GenerateOptions(wallets=STORED_WALLETS, days=60, seed=31, end=AS_OF))
    streamed = generate(GenerateOptions(wallets=STREAMED_WALLETS, days=60, seed=32, end=AS_OF))
    assert not set(stored.wallets) & set(streamed.wallets)
    with closing(connect(settings.database.url)) as conn:
        migrate(conn)
        insert_markets(conn, (Market.model_validate(m) for m in stored.markets))
        insert_trade_rows(conn, stored.trade_rows())
    stored_trades = count_trades(settings)
    new_trades = [Trade.model_validate(row) for row in streamed.trades()]
    # Discoveries of stored wallets: their on-demand rows race the rebuild's batch rows.
    discovered = stored.wallets[:300]
    discoveries = [
        WalletDiscovered(proxy_wallet=w, discovered_at=AS_OF, source="concurrency-test")
        for w in discovered
    ]
    asyncio.run(ensure_topics(bootstrap, settings))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
        **isolated_env,
        "PERSONAS_BROKER": bootstrap,
    }
    conn = connect(settings.database.url)
    with closing(conn), WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
        rebuilds = [_rebuild(env)]
        publish(bootstrap, settings, settings.topics.discovered, discoveries)
        publish(bootstrap, settings, settings.topics.trades, new_trades[: len(new_trades) // 2])
        rebuilds.append(_rebuild(env))
        publish(bootstrap, settings, settings.topics.trades, new_trades[len(new_trades) // 2 :])
        outputs = []
        for proc in rebuilds:
            out, _ = proc.communicate(timeout=120)
            outputs.append(out.decode(errors="replace"))
            assert proc.returncode == 0, outputs[-1][-3000:]
        wait_until(
            lambda: count(conn, "SELECT COUNT(*) FROM trades") == stored_trades + len(new_trades),
            60, "every streamed trade stored",
        )  # fmt: skip
        wait_until_classified(conn, len(discoveries), 60)
        assert worker.stop() == 0
        log_text = worker.log()

    for text in (log_text, *outputs):
        assert "locked" not in text.lower(), text[-3000:]
        assert "database busy" not in text.lower()
    with closing(connect(settings.database.url)) as check:
        assert_trades_exactly_once(check, new_trades + stored_trade_models(stored))
        classified, insufficient = assert_discoveries_classified_once(
            check, settings, discovered, AS_OF
        )
        # Batch is authoritative whichever writer came last.
        sources = dict(check.execute(
            "SELECT source, COUNT(*) FROM wallet_features WHERE window_days = 30 GROUP BY source"
        ).fetchall())  # fmt: skip
        assert set(sources) == {"batch"}, sources
        batch_wallets = count(
            check, "SELECT COUNT(DISTINCT proxy_wallet) FROM wallet_features WHERE source='batch'"
        )
    assert batch_wallets >= STORED_WALLETS // 2
    print(
        f"\nconcurrent writers: {REBUILDS} rebuilds ({batch_wallets} wallets) alongside "
        f"{len(new_trades)} streamed trades and {len(discoveries)} discoveries "
        f"({classified} classified, {insufficient} insufficient): 0 locked errors"
    )


def count_trades(settings: Settings) -> int:
    with closing(connect(settings.database.url)) as conn:
        return count(conn, "SELECT COUNT(*) FROM trades")


def stored_trade_models(dataset: object) -> list[Trade]:
    return [Trade.model_validate(row) for row in dataset.trades()]  # type: ignore[attr-defined]
