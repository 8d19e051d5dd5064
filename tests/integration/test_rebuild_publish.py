"""`personas rebuild` that publishes: each wallet's 30-day FeatureSet sent once, the day marked."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.compute.backfill import day_as_of
from config.settings import Settings
from streams.cli import main
from streams.topics import ensure_topics, partition_count
from tests.integration.kafka import read_topic
from tests.unit.test_backfill import ACTIVE, DAYS, make_db, table, trades

pytestmark = pytest.mark.slow


def test_one_day_is_published_then_marked_published(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(ensure_topics(bootstrap, settings))
    make_db(settings.database.path, trades())
    as_of = day_as_of(DAYS[-1])

    assert main(["rebuild", "--as-of", str(as_of), "--json"]) == 0

    summary = orjson.loads(capsys.readouterr().out)
    assert summary["wallets"] == summary["published"] == ACTIVE[-1]
    records = read_topic(bootstrap, settings.topics.features, ACTIVE[-1] + 1, timeout=5)
    values = [orjson.loads(record.value) for record in records]
    assert len(values) == ACTIVE[-1]
    assert {(v["source"], v["window_days"], v["as_of"]) for v in values} == {("batch", 30, as_of)}
    [run] = table(settings.database.path, "rebuild_runs")
    assert run[:2] == (DAYS[-1].isoformat(), as_of) and run[5] is not None  # published_at


def test_distributed_jobs_are_dealt_over_the_partitions_the_topic_has(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A jobs topic made before `topics.rebuild_jobs_partitions` was raised keeps its count:
    the jobs go round the partitions it has, none to one it lacks."""
    topic = settings.topics.rebuild_jobs
    assert settings.topics.rebuild_jobs_partitions == 4

    async def create_with_two_partitions() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create_with_two_partitions())
    assert asyncio.run(partition_count(bootstrap, settings, topic)) == 2
    make_db(settings.database.path, trades())
    monkeypatch.setenv("PERSONAS_REBUILD__SHARD_WALLETS", "1")

    assert main(["rebuild", "--distributed", "--as-of", str(day_as_of(DAYS[-1])), "--json"]) == 0

    assert orjson.loads(capsys.readouterr().out)["shards"] == ACTIVE[-1] == 3
    by_partition = {
        partition: [
            orjson.loads(r.value)["shard"] for r in read_topic(bootstrap, topic, n, 5, partition)
        ]
        for partition, n in ((0, 2), (1, 1))
    }
    assert by_partition == {0: [0, 2], 1: [1]}
