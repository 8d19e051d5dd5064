"""SIGTERM under load: the batch in flight finishes, its offsets are committed, exit 0 in time,
and repeated SIGTERM/restart cycles lose nothing and double nothing (issue 7: graceful shutdown)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from contextlib import closing
from functools import partial
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from agents.data.generate import DEFAULT_END, GenerateOptions
from config.settings import Settings
from streams.ops.offsets import committed_offsets
from streams.topics import stage_group
from tests.conftest import wait_until
from tests.integration.checks import count, grew, prepare_scenario, wait_until_classified
from tests.integration.kafka import publish
from tests.integration.test_crash_safety import (
    assert_discoveries_classified_once,
    assert_trades_exactly_once,
)
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

SEED = 4242
CYCLES = 2  # SIGTERMs while trades stream in; one more while discoveries do
AS_OF = DEFAULT_END


def committed_total(bootstrap: str, settings: Settings, group: str, topic: str, parts: int) -> int:
    tps = [TopicPartition(topic, p) for p in range(parts)]
    offsets = asyncio.run(committed_offsets(bootstrap, settings, group, tps))
    return sum(offset or 0 for offset in offsets.values())


def test_sigterm_under_load_commits_what_it_stored_and_exits_in_time(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    dataset, trades, discoveries, conn = prepare_scenario(
        bootstrap,
        settings,
        GenerateOptions(wallets=240, days=60, seed=SEED, end=AS_OF),
        "shutdown-test",
        rng,
    )
    topics = settings.topics
    deadline = settings.worker.shutdown_timeout_s
    log = tmp_path / "worker.log"
    stored_sql = "SELECT COUNT(*) FROM trades"
    stops: list[float] = []

    with closing(conn):
        chunks = [trades[i::CYCLES] for i in range(CYCLES)]
        for chunk in chunks:
            worker = WorkerProcess(isolated_env, bootstrap, log).start()
            before = count(conn, stored_sql)
            publish(bootstrap, settings, topics.trades, chunk)
            wait_until(partial(grew, conn, stored_sql, before), 30, "ingest under way", poll=0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            started = time.monotonic()
            status = worker.stop(timeout=deadline + 10)
            stops.append(time.monotonic() - started)
            assert status == 0, worker.log()[-3000:]
            assert stops[-1] < deadline
            # Finished and committed: every stored trade's offset is committed, and no offset
            # is committed past a trade that is not stored.
            committed = committed_total(
                bootstrap, settings, stage_group(settings.worker.app_id, "ingest"), topics.trades,
                settings.topics.trades_partitions,
            )  # fmt: skip
            assert committed == count(conn, stored_sql)

        # Discoveries under SIGTERM too: the feature agent's batch and the classifier's.
        handled = "SELECT COUNT(*) FROM wallets WHERE on_demand_at IS NOT NULL"
        worker = WorkerProcess(isolated_env, bootstrap, log).start()
        wait_until(lambda: count(conn, stored_sql) == len(trades), 60, "all trades")
        publish(bootstrap, settings, topics.discovered, discoveries)
        wait_until(lambda: count(conn, handled) > 0, 30, "features under way", poll=0.01)
        started = time.monotonic()
        assert worker.stop(timeout=deadline + 10) == 0, worker.log()[-3000:]
        stops.append(time.monotonic() - started)
        assert stops[-1] < deadline

        with WorkerProcess(isolated_env, bootstrap, log) as worker:
            wait_until_classified(conn, len(discoveries), 60)
            assert worker.stop() == 0

        assert_trades_exactly_once(conn, trades)
        classified, insufficient = assert_discoveries_classified_once(
            conn, settings, dataset.wallets, AS_OF
        )
        text = log.read_text()
        assert "shutdown exceeded" not in text and "CRITICAL" not in text
        print(
            f"\nshutdown: {CYCLES + 2} SIGTERMs, exits 0 in {min(stops):.1f}-{max(stops):.1f}s "
            f"(deadline {deadline:.0f}s); {len(trades)} trades stored once, committed == stored "
            f"after every stop; {classified} classified + {insufficient} insufficient"
        )


@pytest.mark.parametrize("after_s", [0.2, 1.0, 2.5])
def test_sigterm_while_starting_exits_0(
    bootstrap: str, isolated_env: dict[str, str], tmp_path: Path, after_s: float
) -> None:
    # Before, during and after Faust's startup (imports take ~1 s here): always a clean stop.
    worker = WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log").start()
    time.sleep(after_s)
    assert worker.stop() == 0, worker.log()[-3000:]


def test_a_taken_web_port_is_one_line_naming_the_setting(isolated_env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
            **isolated_env,
            "PERSONAS_WORKER__WEB_PORT": str(port),
        }
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "run"], env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "worker.web_port" in lines[0] and str(port) in lines[0]
