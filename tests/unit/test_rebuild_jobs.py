"""A run's jobs: cut in wallet order, small enough for a message; its shards recorded, and its
end recorded exactly once, even when two workers record its last two shards at the same time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from agents.core.codec import MAX_MESSAGE_BYTES, decode, encode
from agents.core.errors import InvalidMessage
from agents.core.rebuild_jobs import MAX_JOB_WALLETS, RebuildJob, cut_jobs
from agents.store import Connection, connect, migrate
from agents.store.job_runs import ShardDone, job_run, latest_job_run, record_shards, start_job_run
from agents.store.runs import rebuild_runs
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


@on_both_stores
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
