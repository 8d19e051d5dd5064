"""The rebuild spread over workers, in-process: the leader's jobs, computed by two workers (or
one twice), write one host's rows, publish each wallet once per job and finish the run once."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from agents import classifier_agent, ingest_agent, rebuild_jobs_agent
from agents.compute.rebuild import options_from_settings, run_rebuild
from agents.context import AgentContext
from agents.core.codec import encode
from agents.core.features import DAY, feature_date, wallet_features
from agents.core.records import Trade, build_feature_set
from agents.store import Connection, fills_for_wallet
from agents.store.job_runs import latest_job_run
from agents.store.runs import rebuild_runs
from config.settings import Settings, load_settings
from tests.agents.conftest import (
    NOW,
    OTHER,
    WALLET,
    Fatal,
    MemorySender,
    count,
    encoded,
    messages,
    round_trips,
)
from tests.agents.test_ingest_agent import TOPIC as TRADES

TODAY = feature_date(int(NOW))
THIRD = "0x" + "c" * 40
WALLETS = (WALLET, OTHER, THIRD)


@pytest.fixture
def settings(isolated_env: dict[str, str]) -> Settings:
    """One wallet per shard (three jobs), computed serially: no processes in this tier."""
    return load_settings(env={
        **isolated_env, "PERSONAS_REBUILD__SHARD_WALLETS": "1",
        "PERSONAS_REBUILD__PARALLEL_ENABLED": "false",
    })  # fmt: skip


async def ingest(context: AgentContext, trades: list[Trade]) -> None:
    await ingest_agent.handle(messages(TRADES, encoded(trades)), context)


async def three_wallets(context: AgentContext) -> None:
    await ingest(context, [t for w in WALLETS for t in round_trips(w, 6, int(NOW))])


async def start(context: AgentContext, sender: MemorySender, as_of: int = int(NOW)) -> list[Any]:
    """Start a run as of `as_of`; return its job messages (and forget them from the sender)."""
    settings = context.settings
    weights = [1.0] * settings.topics.rebuild_jobs_partitions
    await rebuild_jobs_agent.start_run(settings, sender, as_of, NOW, "leader", weights=weights)
    topic = settings.topics.rebuild_jobs
    jobs: list[bytes | None] = [value for name, _, value in sender.sent if name == topic]
    sender.sent.clear()
    return messages(topic, jobs)


async def test_a_run_s_jobs_are_dealt_over_the_partitions_by_weight(
    context: AgentContext, sender: MemorySender
) -> None:
    wallets = [f"0x{n:040x}" for n in range(10)]
    await ingest(context, [t for w in wallets for t in round_trips(w, 6, int(NOW))])
    # The topic has 3 partitions on the broker, whatever the settings say (4); the last one
    # belongs to the classifier's worker, which gets half the share of the others.
    await rebuild_jobs_agent.start_run(
        context.settings, sender, int(NOW), NOW, "leader", weights=[1.0, 1.0, 0.5]
    )
    topics = context.settings.topics
    assert {name for name, _, _ in sender.sent} == {topics.rebuild_jobs}
    shards = [orjson.loads(value)["shard"] for _, _, value in sender.sent]
    assert sorted(shards) == list(range(10))  # one wallet a shard
    by_partition = [sender.partitions.count(p) for p in range(3)]
    assert by_partition == [4, 4, 2]


def batch_rows(db: Connection) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT * FROM wallet_features WHERE source = 'batch' ORDER BY proxy_wallet, window_days"
    ).fetchall()


async def test_jobs_done_by_two_workers_write_one_host_s_rows_and_finish_once(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    await three_wallets(context)
    jobs = await start(context, sender)
    assert len(jobs) == 3

    await rebuild_jobs_agent.handle(jobs[:1], context)  # one worker's partitions …
    run = latest_job_run(db)
    assert run is not None and (run.shards_done, run.finished_at) == (1, None)
    assert rebuild_runs(db, TODAY, TODAY) == {}
    await rebuild_jobs_agent.handle(jobs[1:], context)  # … and the other's

    run = latest_job_run(db)
    assert run is not None and run.finished_at == NOW and run.shards_done == 3
    assert rebuild_runs(db, TODAY, TODAY)[TODAY].published_at == NOW
    published = sender.to(context.settings.topics.features)
    assert sorted(f["proxy_wallet"] for f in published) == sorted(WALLETS)
    assert {(f["source"], f["window_days"], f["as_of"]) for f in published} == {
        ("batch", 30, int(NOW))
    }
    metrics = context.metrics
    assert metrics.rebuild_run_shards.labels("done")._value.get() == 3
    assert metrics.rebuild_run_finished._value.get() == NOW
    assert metrics.rebuild_last_success._value.get() == NOW

    distributed = batch_rows(db)
    options = options_from_settings(context.settings, int(NOW), computed_at=NOW)
    run_rebuild(context.settings.database.url, options)  # one host, the same data and options
    assert batch_rows(db) == distributed and len(distributed) == 3 * 3


async def test_a_job_redelivered_rewrites_its_rows_and_finishes_nothing_twice(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    await three_wallets(context)
    jobs = await start(context, sender)
    await rebuild_jobs_agent.handle(jobs, context)
    before = batch_rows(db)
    db.execute("UPDATE rebuild_runs SET published_at = 1")  # would be reset if recorded again

    await rebuild_jobs_agent.handle(jobs[1:2], context)  # its worker died before committing

    assert batch_rows(db) == before
    assert count(db, "rebuild_job_shards") == 3
    assert rebuild_runs(db, TODAY, TODAY)[TODAY].published_at == 1


async def test_a_publish_error_retrying_cannot_fix_records_nothing(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    await three_wallets(context)
    jobs = await start(context, sender)
    sender.failures.append(ValueError("message too large"))

    with pytest.raises(Fatal):  # the worker stops uncommitted: the job is redelivered
        await rebuild_jobs_agent.handle(jobs[:1], context)

    assert count(db, "rebuild_job_shards") == 0


async def test_a_transient_publish_error_is_retried(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    await three_wallets(context)
    jobs = await start(context, sender)
    sender.failures.append(KafkaConnectionError("broker away"))

    await rebuild_jobs_agent.handle(jobs, context)

    assert count(db, "rebuild_job_shards") == 3


async def test_a_bad_job_is_dead_lettered(context: AgentContext, sender: MemorySender) -> None:
    topic = context.settings.topics.rebuild_jobs
    await rebuild_jobs_agent.handle(messages(topic, [b'{"run_id": "x"}']), context)
    assert [name for name, _, _ in sender.sent] == [f"{topic}.dlq"]


async def test_a_run_of_no_wallet_is_finished_at_once(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    assert await start(context, sender) == []
    run = latest_job_run(db)
    assert run is not None and run.shards == 0 and run.finished_at == NOW
    assert rebuild_runs(db, TODAY, TODAY)[TODAY].published_at == NOW


async def on_demand(context: AgentContext, db: Connection, wallet: str, as_of: int) -> None:
    """The on-demand path's FeatureSet of `wallet` at `as_of`, classified and stored."""
    windows, lifetime = wallet_features(fills_for_wallet(db, wallet, as_of), as_of, (30,))
    record = build_feature_set(wallet, 30, as_of, "on_demand", windows[30], lifetime, NOW)
    topic = context.settings.topics.features
    await classifier_agent.handle(messages(topic, [encode(record)]), context)


async def test_the_skew_names_what_a_trade_after_the_discovery_changed(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    # OTHER is old enough to be judged beyond stage 1's age gate (45 days).
    await ingest(context, round_trips(WALLET, 6, int(NOW)) + round_trips(OTHER, 50, int(NOW)))
    rebuilt, discovered = int(NOW) + DAY // 2, int(NOW) + DAY // 4  # the same UTC day
    for wallet in (WALLET, OTHER):  # discovered today, before the rebuild
        await on_demand(context, db, wallet, discovered)
    # A trade of OTHER's, timestamped before its discovery, arrives after it: a losing exit.
    late = [
        Trade(trade_id="late-b", proxy_wallet=OTHER, condition_id="late", side="BUY",
              size=500.0, price=0.9, timestamp=discovered - 7200),
        Trade(trade_id="late-s", proxy_wallet=OTHER, condition_id="late", side="SELL",
              size=500.0, price=0.1, timestamp=discovered - 3600),
    ]  # fmt: skip
    await ingest(context, late)

    jobs = await start(context, sender, rebuilt)
    await rebuild_jobs_agent.handle(jobs, context)

    run = latest_job_run(db)
    assert run is not None
    skew = rebuild_jobs_agent.run_skew(run)
    assert (skew.compared, skew.differing) == (2, 1)
    assert {"trade_count", "realized_pnl", "total_trades"} <= set(skew.by_feature)
    assert skew.classification_changed == 1 and skew.changes[0]["wallet"] == OTHER
    metrics = context.metrics
    assert metrics.rebuild_skew_wallets.labels("differing")._value.get() == 1
    assert metrics.rebuild_skew_feature_wallets.labels("trade_count")._value.get() == 1
