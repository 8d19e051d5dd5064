"""Two workers, as on two hosts, sharing the broker and one PostgreSQL database, under load:
a host lost (SIGKILL of its whole process group), a host hung for 30 s (SIGSTOP, then SIGCONT),
the database's connections cut. Each ends with 0 events lost, 0 rows doubled, and every row
equal to a fresh recomputation from the stored trades."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path

import psycopg
import pytest

from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import Connection
from config.settings import Settings
from tests.conftest import wait_until
from tests.integration.checks import (
    Scenario,
    count,
    grew,
    prepare_scenario,
    wait_until_classified,
)
from tests.integration.kafka import publish
from tests.integration.test_crash_safety import (
    assert_discoveries_classified_once,
    assert_trades_exactly_once,
)
from tests.integration.worker import WorkerProcess, running_workers
from tests.postgres import require_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

AS_OF = DEFAULT_END
WALLETS = 240
TRADES = "SELECT COUNT(*) FROM trades"
HANDLED = "SELECT COUNT(*) FROM wallets WHERE on_demand_at IS NOT NULL"
HUNG_FOR_S = 30.0


@pytest.fixture
def scenario(bootstrap: str, settings: Settings) -> Iterator[Scenario]:
    options = GenerateOptions(wallets=WALLETS, days=60, seed=47, end=AS_OF)
    found = prepare_scenario(bootstrap, settings, options, "fault-test", random.Random(47))
    with closing(found.conn):
        yield found


@pytest.fixture
def workers(
    bootstrap: str, isolated_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers of one app: the partitions of every topic split between them."""
    with running_workers(isolated_env, bootstrap, tmp_path) as (first, second):
        yield first, second


def stream(bootstrap: str, settings: Settings, scenario: Scenario) -> None:
    """Every trade, then every discovery once its wallet's trades are stored (a discovery
    computed before its trades arrived would rightly differ from the recomputation)."""
    publish(bootstrap, settings, settings.topics.trades, scenario.trades)
    wait_until(lambda: count(scenario.conn, TRADES) == len(scenario.trades), 90,
               "every trade stored")  # fmt: skip
    publish(bootstrap, settings, settings.topics.discovered, scenario.discoveries)


def assert_exact(scenario: Scenario, settings: Settings) -> int:
    """0 lost, 0 doubled, every row the recomputation; returns the wallets classified."""
    conn = scenario.conn
    wait_until_classified(conn, len(scenario.discoveries), 90)
    assert_trades_exactly_once(conn, scenario.trades)
    classified, insufficient = assert_discoveries_classified_once(
        conn, settings, scenario.dataset.wallets, AS_OF
    )
    assert classified + insufficient == len(scenario.discoveries)
    assert count(conn, "SELECT COUNT(*) FROM wallet_features") == classified
    assert count(conn, "SELECT COUNT(*) FROM wallet_classifications") == classified
    return classified


def during(progressed: Callable[[], bool], fault: Callable[[], None]) -> None:
    """Run `fault` as soon as the workers made progress on the load."""
    wait_until(progressed, 60, "the workers to make progress", poll=0.02)
    fault()


def test_a_lost_host_s_partitions_are_taken_over(
    bootstrap: str,
    settings: Settings,
    scenario: Scenario,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    lost, survivor = workers
    conn = scenario.conn
    loader = threading.Thread(target=stream, args=(bootstrap, settings, scenario))
    loader.start()
    during(lambda: count(conn, TRADES) > 0, lambda: lost.signal_group(signal.SIGKILL))
    started = time.monotonic()
    loader.join()
    classified = assert_exact(scenario, settings)
    assert survivor.stop() == 0, survivor.log()[-3000:]
    took = time.monotonic() - started
    print(f"\nlost host: SIGKILL of a worker's group; the other finished {classified} "
          f"classifications {took:.1f}s later; lost 0, doubled 0")  # fmt: skip


def test_a_hung_host_rejoins_and_writes_nothing_twice(
    bootstrap: str,
    settings: Settings,
    scenario: Scenario,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    hung, other = workers
    conn = scenario.conn
    publish(
        bootstrap, settings, settings.topics.trades, scenario.trades[: len(scenario.trades) // 2]
    )
    during(lambda: count(conn, TRADES) > 0, lambda: hung.signal_group(signal.SIGSTOP))
    try:
        publish(bootstrap, settings, settings.topics.trades,
                scenario.trades[len(scenario.trades) // 2 :])  # fmt: skip
        wait_until(lambda: count(conn, TRADES) == len(scenario.trades), 60,
                   "the other worker to store every trade")  # fmt: skip
        time.sleep(max(0.0, HUNG_FOR_S - 5))
    finally:
        hung.signal_group(signal.SIGCONT)
    publish(bootstrap, settings, settings.topics.discovered, scenario.discoveries)
    classified = assert_exact(scenario, settings)
    assert hung.process is not None and hung.process.poll() is None, hung.log()[-3000:]
    assert hung.stop() == 0, hung.log()[-3000:]
    assert other.stop() == 0, other.log()[-3000:]
    print(
        f"\nhung host: SIGSTOP {HUNG_FOR_S:.0f}s then SIGCONT; {classified} classified; "
        "lost 0, doubled 0"
    )


def terminate_backends(database_url: str) -> int:
    """Cut every connection to the test's database (as a restart or a network cut would)."""
    name = database_url.rsplit("/", 1)[-1]
    with psycopg.connect(require_server(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_cut_database_connections_are_retried(
    bootstrap: str,
    settings: Settings,
    database_url: str,
    scenario: Scenario,
    workers: tuple[WorkerProcess, WorkerProcess],
) -> None:
    conn: Connection = scenario.conn
    cuts: list[int] = []
    loader = threading.Thread(target=stream, args=(bootstrap, settings, scenario))
    loader.start()
    for done in (TRADES, HANDLED):
        wait_until(partial(grew, conn, done, 0), 90, f"progress on {done}", poll=0.02)
        cuts.append(terminate_backends(database_url))
        time.sleep(0.5)
        cuts.append(terminate_backends(database_url))
    loader.join()
    classified = assert_exact(scenario, settings)
    for worker in workers:
        assert worker.stop() == 0, worker.log()[-3000:]
        assert "Traceback" not in worker.log(), worker.log()[-3000:]
    assert sum(cuts) > 0
    print(
        f"\ncut connections: {sum(cuts)} backends terminated in {len(cuts)} cuts under load; "
        f"{classified} classified; lost 0, doubled 0"
    )
