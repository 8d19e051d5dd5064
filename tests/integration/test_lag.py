"""`personas lag`: messages and seconds while a consumer is stopped, and after it catches up."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from config.settings import Settings
from streams.cli import main
from streams.health import Health
from streams.lag_monitor import monitor_lag
from streams.metrics import Metrics
from streams.ops.lag import PartitionLag, partition_status
from streams.topics import ensure_topics, stage_group
from tests.integration.kafka import consume_and_commit

PARTITIONS = 4
AGE_S = 120


def _produce(bootstrap: str, topic: str, per_partition: int, age_s: float) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            stamp = int((time.time() - age_s) * 1000)
            sends = [
                await producer.send(topic, orjson.dumps({"p": p}), partition=p, timestamp_ms=stamp)
                for p in range(PARTITIONS)
                for _ in range(per_partition)
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    asyncio.run(send())


def _lag(capsys: pytest.CaptureFixture[str], group: str) -> dict[str, object]:
    assert main(["lag", "--group", group, "--json"]) == 0
    groups = orjson.loads(capsys.readouterr().out)["groups"]
    assert [g["group"] for g in groups] == [group]
    return groups[0]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_lag_while_stopped_and_after_catching_up(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic, per_partition=3, age_s=0)
    consume_and_commit(bootstrap, settings, group, topic, expected=3 * PARTITIONS)
    caught_up = _lag(capsys, group)
    assert caught_up["lag_messages"] == 0 and caught_up["status"] == "OK"

    # The consumer is stopped; old messages arrive (batched by the producer: the log end must
    # still be right, which `end_offsets` alone gets wrong on the embedded broker).
    _produce(bootstrap, topic, per_partition=5, age_s=AGE_S)
    behind = _lag(capsys, group)
    parts = behind["partitions"]
    assert [(p["partition"], p["committed"], p["log_end"], p["lag_messages"]) for p in parts] == [  # type: ignore[attr-defined,index]
        (p, 3, 8, 5) for p in range(PARTITIONS)
    ]
    assert behind["lag_messages"] == 5 * PARTITIONS
    for part in parts:  # type: ignore[attr-defined]
        assert AGE_S - 5 <= part["lag_seconds"] <= AGE_S + 60
    assert behind["status"] in ("WARN", "STOP")  # STOP where the broker reports no member

    # The worker's monitor: two samples with no progress make the group unhealthy.
    metrics, health = Metrics(), Health()

    async def monitor() -> None:
        task = asyncio.create_task(monitor_lag(bootstrap, settings, metrics, health, 0.2))
        try:
            async with asyncio.timeout(20):
                while health.healthy:  # noqa: ASYNC110 - Health has no event to await
                    await asyncio.sleep(0.1)
        finally:
            task.cancel()

    asyncio.run(monitor())
    assert list(health.report()["problems"]) == [f"lag:{group}"]
    gauge = metrics.consumer_lag_messages.labels(group, topic, "0")._value.get()
    assert gauge == 5

    consume_and_commit(bootstrap, settings, group, topic, expected=5 * PARTITIONS)
    after = _lag(capsys, group)
    assert after["lag_messages"] == 0 and after["lag_seconds"] == 0
    assert after["status"] == "OK"
    assert [p["committed"] for p in after["partitions"]] == [8] * PARTITIONS  # type: ignore[attr-defined,index]


def _part(committed: int | None, end: int, lag_s: float) -> PartitionLag:
    lag = max(end - (committed or 0), 0) if committed is None or committed <= end else 0
    return PartitionLag("t", 0, committed, 0, end, lag, lag_s)


@pytest.mark.parametrize(
    ("current", "members", "previous", "status"),
    [
        (_part(10, 10, 0), 1, None, "OK"),
        (_part(12, 10, 0), 1, None, "ERR"),  # committed beyond the log end: the log was lost
        (_part(5, 10, 1), 0, None, "STOP"),
        (_part(5, 10, 1), 1, None, "OK"),  # lag being worked through
        (_part(5, 10, 90), 1, None, "WARN"),
        (_part(5, 10, 90), 1, _part(5, 9, 80), "STALL"),  # not moving, old messages waiting
        (_part(5, 10, 1), 1, _part(4, 8, 1), "WARN"),  # lag growing
        (_part(6, 10, 1), 1, _part(5, 10, 1), "OK"),
    ],
)
def test_partition_status_rule(
    current: PartitionLag, members: int, previous: PartitionLag | None, status: str
) -> None:
    assert partition_status(current, members, previous) == status
