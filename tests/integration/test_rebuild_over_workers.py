"""A rebuild spread over two workers through the real broker: one is killed mid-rebuild (SIGKILL
of its whole process group), its shards are redelivered to the other, and the run ends once with
the rows a single-host rebuild writes on the same data; the classifier's worker is dealt fewer
shards, by the partitions the workers recorded holding."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.compute.rebuild import options_from_settings, run_rebuild
from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import Connection, insert_trade_rows, trade_row
from agents.store.job_runs import JobRun, latest_job_run
from agents.store.runs import rebuild_runs
from config.settings import load_settings
from streams.cli import main
from streams.dealing import recorded_holders
from tests.conftest import wait_until
from tests.integration.checks import prepare_scenario
from tests.integration.worker import WorkerProcess, group_members, running_workers

pytestmark = pytest.mark.slow

AS_OF = DEFAULT_END
# Small shards, two processes per worker: many jobs, so that the kill lands mid-run.
REBUILD_ENV = {
    "PERSONAS_REBUILD__SHARD_WALLETS": "8",
    "PERSONAS_REBUILD__WORKERS": "2",
    "PERSONAS_FEATURES__PROCESSES": "1",
}
BATCH_ROWS = "SELECT * FROM wallet_features WHERE source = 'batch' ORDER BY 1, 2, 3"


@pytest.fixture
def env(isolated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in REBUILD_ENV.items():
        monkeypatch.setenv(name, value)  # the in-process `personas rebuild` cuts the same shards
    return {**isolated_env, **REBUILD_ENV}


@pytest.fixture
def conn(bootstrap: str, env: dict[str, str]) -> Iterator[Connection]:
    settings = load_settings(env=env)
    options = GenerateOptions(wallets=200, days=60, seed=23, end=AS_OF)
    scenario = prepare_scenario(bootstrap, settings, options, "rebuild-test")
    insert_trade_rows(scenario.conn, (trade_row(trade) for trade in scenario.trades))
    with closing(scenario.conn):
        yield scenario.conn


@pytest.fixture
def workers(
    bootstrap: str, env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    with running_workers(env, bootstrap, tmp_path) as (first, second):
        yield first, second


def run_now(conn: Connection) -> JobRun:
    run = latest_job_run(conn)
    assert run is not None
    return run


def name_of(worker: WorkerProcess) -> str:
    assert worker.process is not None
    return f":{worker.process.pid}"


def metric(worker: WorkerProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{name} not on /metrics")


def test_a_worker_killed_mid_rebuild_leaves_its_shards_to_the_other(
    bootstrap: str,
    env: dict[str, str],
    cli_env: None,
    conn: Connection,
    workers: tuple[WorkerProcess, WorkerProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(env=env)
    victim, survivor = workers
    wait_until(
        lambda: group_members(bootstrap, settings, "rebuild") == 2, 60, "both in the rebuild group"
    )

    assert main(["rebuild", "--distributed", "--as-of", str(AS_OF), "--json"]) == 0
    started: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    shards = started["shards"]

    def victim_mid_run() -> bool:
        run = run_now(conn)
        by_worker = run.shards_by_worker()
        mine = sum(n for worker, n in by_worker.items() if worker.endswith(name_of(victim)))
        return mine >= 1 and run.shards_done < shards // 2

    wait_until(victim_mid_run, 60, "the victim to finish a shard", poll=0.01)
    victim_name = name_of(victim)
    done_at_kill = run_now(conn).shards_done
    victim.signal_group(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: run_now(conn).finished_at is not None, 120, "the run to finish")
    took = time.monotonic() - killed

    run = run_now(conn)
    by_worker = run.shards_by_worker()
    assert run.shards_done == run.shards == shards
    assert len(by_worker) == 2 and any(w.endswith(victim_name) for w in by_worker)
    recorded = rebuild_runs(conn, run.feature_date, run.feature_date)[run.feature_date]
    assert recorded.as_of == AS_OF and recorded.published_at == run.finished_at
    survivor_done = survivor.log().count(f"rebuild run {run.run_id}: shard ")
    assert survivor.log().count(f"rebuild run {run.run_id} finished") == 1
    assert metric(survivor, "personas_rebuild_run_finished_timestamp_seconds") == run.finished_at
    assert metric(survivor, 'personas_rebuild_run_shards{state="done"}') == shards

    assert main(["rebuild", "--status", "--json"]) == 0
    status = orjson.loads(capsys.readouterr().out)
    assert (status["state"], status["shards_done"]) == ("finished", shards)

    distributed = conn.execute(BATCH_ROWS).fetchall()
    [(computed_at,)] = conn.execute("SELECT DISTINCT computed_at FROM wallet_features").fetchall()
    options = options_from_settings(settings, AS_OF, computed_at=computed_at)
    single = run_rebuild(settings.database.url, options)
    assert conn.execute(BATCH_ROWS).fetchall() == distributed
    assert len(distributed) == single.rows_written == 3 * run.wallets
    assert survivor.stop() == 0, survivor.log()[-3000:]
    print(
        f"\nrebuild over 2 workers, one SIGKILLed after {done_at_kill}/{shards} shards: the run "
        f"finished {took:.1f}s later; shards by worker {sorted(by_worker.values())}, the survivor "
        f"computed {survivor_done} (redelivered ones included); {len(distributed)} rows, equal "
        f"to one host's run_rebuild"
    )


def test_the_classifier_s_worker_is_dealt_fewer_shards(
    bootstrap: str,
    env: dict[str, str],
    cli_env: None,
    conn: Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Classifying a FeatureSet costs as much as a wallet's shard work on one process: over two
    # processes, the classifier's worker takes (1 − 0.5) ÷ 2 = a quarter of the shards.
    monkeypatch.setenv("PERSONAS_REBUILD__CLASSIFIER_COST", "1.0")
    env = {**env, "PERSONAS_REBUILD__CLASSIFIER_COST": "1.0"}
    settings = load_settings(env=env)
    topics = settings.topics
    with running_workers(env, bootstrap, tmp_path) as workers:

        def settled() -> bool:
            # Both groups formed (the classifier's partition may move when the second joins),
            # and every partition recorded by the worker that holds it.
            if any(group_members(bootstrap, settings, stage) != 2
                   for stage in ("rebuild", "classifier")):  # fmt: skip
                return False
            owners, classifiers = recorded_holders(settings)
            return len(set(owners.values())) == 2 and len(owners) == 4 and len(classifiers) == 1

        wait_until(settled, 60, "both workers in both groups, their partitions recorded")
        holds_features = f"classifier assigned [('{topics.features}', 0)]"

        def last_classifier_assignment(worker: WorkerProcess) -> str:
            return [line for line in worker.log().splitlines() if "classifier assigned" in line][-1]

        [classifier] = [w for w in workers if holds_features in last_classifier_assignment(w)]
        [other] = [w for w in workers if w is not classifier]

        assert main(["rebuild", "--distributed", "--as-of", str(AS_OF), "--json"]) == 0
        shards = orjson.loads(capsys.readouterr().out)["shards"]
        wait_until(lambda: run_now(conn).finished_at is not None, 120, "the run to finish")

    by_worker = run_now(conn).shards_by_worker()
    mine = sum(n for w, n in by_worker.items() if w.endswith(name_of(classifier)))
    theirs = sum(n for w, n in by_worker.items() if w.endswith(name_of(other)))
    assert mine + theirs == shards == 25
    # A quarter of 25, dealt per partition (two each): within a shard of each partition's share.
    assert abs(mine - shards / 4) <= 2, by_worker
    print(f"\nshards by worker, classifier's first: {mine}, {theirs}")
