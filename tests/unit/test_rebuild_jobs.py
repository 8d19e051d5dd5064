"""A run's jobs: cut in wallet order, small enough for a message, dealt over the partitions so
that the classifier's worker takes less; its shards recorded, and its end recorded exactly once,
even when two workers record its last two shards at the same time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.codec import MAX_MESSAGE_BYTES, decode, encode
from agents.core.errors import InvalidMessage
from agents.core.rebuild_jobs import (
    MAX_JOB_WALLETS,
    RebuildJob,
    cut_jobs,
    deal,
    partition_weights,
)
from agents.store import Connection, connect, migrate
from agents.store.job_runs import ShardDone, job_run, latest_job_run, record_shards, start_job_run
from agents.store.partition_owners import claim_partitions, partition_owners, release_partitions
from agents.store.runs import rebuild_runs
from config.settings import Settings, load_settings
from streams import dealing
from streams.topics import stage_group
from tests.conftest import on_both_stores

AS_OF = 1_767_225_600
DAY = "2026-01-01"
WALLETS = [f"0x{n:040x}" for n in range(2500)]


def cut(wallets: list[str], size: int) -> list[RebuildJob]:
    return cut_jobs("run", wallets, size, as_of=AS_OF, computed_at=1.5, windows=(7, 30, 90),
                    publish_window=30)  # fmt: skip


def test_jobs_cover_every_wallet_once_in_order() -> None:
    jobs = cut(WALLETS[:7], 3)
    assert [job.wallets for job in jobs] == [tuple(WALLETS[0:3]), tuple(WALLETS[3:6]),
                                             (WALLETS[6],)]  # fmt: skip
    assert [(job.shard, job.shards) for job in jobs] == [(0, 3), (1, 3), (2, 3)]
    assert cut([], 3) == []


def test_a_job_fits_in_a_message_whatever_the_shard_size() -> None:
    jobs = cut(WALLETS, 2000)
    assert max(len(job.wallets) for job in jobs) == MAX_JOB_WALLETS
    assert sum(len(job.wallets) for job in jobs) == len(WALLETS)
    assert all(len(encode(job)) < MAX_MESSAGE_BYTES for job in jobs)
    assert decode(RebuildJob, encode(jobs[0])) == jobs[0]


def test_an_inconsistent_job_is_rejected_naming_the_field() -> None:
    value = encode(cut(WALLETS[:2], 1)[0]).replace(b'"shard":0', b'"shard":5')
    with pytest.raises(InvalidMessage):
        decode(RebuildJob, value)


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    with closing(connect(database_url)) as opened:
        migrate(opened)
        yield opened


def done(shard: int, worker: str = "w1", failed: int = 0) -> ShardDone:
    return ShardDone("run", shard, 10, 30, failed, {"compared": 0}, worker, 100.0 + shard)


@given(st.integers(0, 200), st.integers(1, 12))
def test_equal_weights_deal_round_robin(jobs: int, partitions: int) -> None:
    assert deal(jobs, [1.0] * partitions) == [n % partitions for n in range(jobs)]


@given(st.integers(0, 300), st.lists(st.floats(0, 4), min_size=1, max_size=10))
def test_each_partition_gets_its_share_within_one_job(jobs: int, weights: list[float]) -> None:
    if sum(weights) == 0:
        with pytest.raises(ValueError, match="not all 0"):
            deal(jobs, weights)
        return
    dealt = deal(jobs, weights)
    assert len(dealt) == jobs
    for partition, weight in enumerate(weights):
        assert abs(dealt.count(partition) - jobs * weight / sum(weights)) < 1 + 1e-9


def test_the_classifier_s_worker_is_dealt_less_so_both_end_together() -> None:
    owners = {p: "b" if p % 2 else "a" for p in range(8)}  # two workers, four partitions each
    weights = partition_weights(8, owners, "a", 0.25)
    dealt = deal(80, weights)
    on_a = sum(1 for p in dealt if owners[p] == "a")
    # 80 shards in all, plus 80 × 0.25 shards' worth classified on a: 30 + 20 = 50 = b's 50;
    # dealt per partition, a worker's total is within a shard of that.
    assert weights == [0.1875, 0.3125] * 4
    assert abs(on_a - 30) <= 1
    # Three workers: the classifier takes 1 − 2·0.25, the others 1.25 each.
    three = {0: "a", 1: "b", 2: "c"}
    assert partition_weights(3, three, "a", 0.25) == [0.5, 1.25, 1.25]
    # With cost so high the classifier is busy enough: no shard for it.
    assert partition_weights(3, three, "a", 0.75)[0] == 0.0


@pytest.mark.parametrize(
    ("classifier", "cost"),
    [
        (None, 0.25),  # no member is assigned the features topic
        ("c", 0.25),  # the classifier takes no rebuild jobs
        ("a", 0.0),  # the cost is switched off
    ],
)
def test_workers_share_alike_whatever_partitions_they_own(
    classifier: str | None, cost: float
) -> None:
    # Three partitions over two workers: round robin would give a two thirds of the shards.
    owners = {0: "a", 1: "b", 2: "a"}
    assert partition_weights(3, owners, classifier, cost) == [0.5, 1.0, 0.5]


@pytest.mark.parametrize(
    "owners",
    [
        {0: "a", 1: "a", 2: "a"},  # one worker: nobody to take more
        {0: "a", 2: "b"},  # partition 1 has no owner: the group is rebalancing
        {},  # the group could not be read
    ],
)
def test_jobs_are_dealt_round_robin_to_one_worker_or_when_the_group_cannot_tell(
    owners: dict[int, str],
) -> None:
    assert deal(6, partition_weights(3, owners, "a", 0.25)) == [0, 1, 2, 0, 1, 2]


def test_the_last_shard_finishes_the_run_and_records_its_day_once(conn: Connection) -> None:
    start_job_run(conn, "run", DAY, AS_OF, 3, 30, 50.0, "leader")
    assert record_shards(conn, [done(0), done(2)], 60.0) == []
    assert rebuild_runs(conn, DAY, DAY) == {}

    assert record_shards(conn, [done(1, "w2")], 70.0) == ["run"]
    assert record_shards(conn, [done(1, "w3")], 80.0) == []  # redelivered: its first record kept

    run = latest_job_run(conn)
    assert run is not None and run.finished_at == 70.0
    assert (run.shards_done, run.wallets_done, run.rows_written) == (3, 30, 90)
    assert run.shards_by_worker() == {"w1": 2, "w2": 1}
    recorded = rebuild_runs(conn, DAY, DAY)[DAY]
    assert recorded.as_of == AS_OF and recorded.published_at == 70.0


@on_both_stores
def test_a_run_with_a_failed_wallet_finishes_without_recording_its_day(conn: Connection) -> None:
    start_job_run(conn, "run", DAY, AS_OF, 2, 20, 50.0, "leader")
    record_shards(conn, [done(0, failed=1)], 60.0)
    assert record_shards(conn, [done(1)], 70.0) == ["run"]
    assert rebuild_runs(conn, DAY, DAY) == {}
    assert job_run(conn, "run") is not None


def _record_together(database_url: str, run_id: str, shard: int, ready: threading.Barrier,
                     finished: list[list[str]]) -> None:  # fmt: skip
    with closing(connect(database_url)) as own:
        ready.wait()
        shard_done = ShardDone(run_id, shard, 10, 30, 0, {}, f"w{shard}", 60.0)
        finished.append(record_shards(own, [shard_done], 60.0))


@on_both_stores
def test_two_workers_recording_the_last_shards_together_finish_the_run_once(
    database_url: str, conn: Connection
) -> None:
    for attempt in range(5):
        run_id = f"run{attempt}"
        start_job_run(conn, run_id, DAY, AS_OF, 2, 20, 50.0, "leader")
        finished: list[list[str]] = []
        ready = threading.Barrier(2)
        threads = [
            threading.Thread(
                target=_record_together, args=(database_url, run_id, n, ready, finished)
            )
            for n in (0, 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(finished) == [[], [run_id]]


@on_both_stores
def test_the_partitions_a_worker_holds_are_claimed_and_released(conn: Connection) -> None:
    claim_partitions(conn, "g", "a", [("jobs", 0), ("jobs", 1), ("other", 0)], 1.0)
    claim_partitions(conn, "g", "b", [("jobs", 1), ("jobs", 2)], 2.0)  # b took 1 over from a
    assert partition_owners(conn, "g", "jobs") == {0: "a", 1: "b", 2: "b"}
    release_partitions(conn, "g", "a", [("jobs", 0), ("jobs", 1)])  # a's late revocation
    assert partition_owners(conn, "g", "jobs") == {1: "b", 2: "b"}  # b's claim is kept
    assert partition_owners(conn, "g", "other") == {0: "a"}
    assert partition_owners(conn, "h", "jobs") == {}


@pytest.fixture
def four_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    async def partition_count(bootstrap: str, settings: Settings, topic: str) -> int:
        return 4

    monkeypatch.setattr(dealing, "partition_count", partition_count)


@on_both_stores
async def test_the_leader_deals_by_the_holders_recorded_and_round_robin_without(
    isolated_env: dict[str, str], conn: Connection, four_partitions: None
) -> None:
    settings = load_settings(env={**isolated_env, "PERSONAS_REBUILD__WORKERS": "1"})
    topics, app_id = settings.topics, settings.worker.app_id
    jobs = [(topics.rebuild_jobs, p) for p in range(4)]
    rebuild_group = stage_group(app_id, "rebuild")
    claim_partitions(conn, rebuild_group, "a", jobs[:2], 1.0)
    assert await dealing.job_weights("broker", settings) == [1.0] * 4  # b has not recorded yet
    claim_partitions(conn, rebuild_group, "b", jobs[2:], 1.0)
    claim_partitions(conn, stage_group(app_id, "classifier"), "a", [(topics.features, 0)], 1.0)
    cost = settings.rebuild.classifier_cost
    assert await dealing.job_weights("broker", settings) == pytest.approx(
        [(1 - cost) / 2] * 2 + [(1 + cost) / 2] * 2
    )


async def test_a_store_that_cannot_be_read_deals_round_robin(
    tmp_path: Path, four_partitions: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "missing" / "personas.db")})
    assert await dealing.job_weights("broker", settings) == [1.0] * 4
    assert "dealt round robin: partition owners unreadable" in caplog.text
