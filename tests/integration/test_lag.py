"""`personas lag`: messages and seconds while a consumer is stopped, and after it catches up; STOP
once the group's only worker has exited (the status rule itself: tests/unit/test_lag_status.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.core.records import WalletDiscovered
from agents.data.generate import DEFAULT_END
from config.settings import Settings
from streams.cli import main
from streams.health import Health
from streams.lag_monitor import monitor_lag
from streams.metrics import Metrics
from streams.ops.lag import GroupLag, collect_lag
from streams.topics import ensure_topics, stage_group
from tests.conftest import wait_until
from tests.integration.kafka import consume_and_commit, publish
from tests.integration.worker import WorkerProcess

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
    assert [(p["partition"], p["committed"], p["log_end"], p["lag_messages"]) for p in parts] == [  # type: ignore[attr-defined]
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
    assert [p["committed"] for p in after["partitions"]] == [8] * PARTITIONS  # type: ignore[attr-defined]


def _discover(bootstrap: str, settings: Settings, first: int, count: int) -> None:
    """`count` discoveries of distinct wallets (keyed by wallet: spread over the partitions)."""
    events = [
        WalletDiscovered(proxy_wallet=f"0x{n:040x}", discovered_at=DEFAULT_END, source="lag")
        for n in range(first, first + count)
    ]
    publish(bootstrap, settings, settings.topics.discovered, events)


@pytest.mark.slow
def test_stop_once_the_only_worker_exited_cleanly(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    """The broker may keep listing a member that is gone (the embedded one does, for a first
    member): STOP must still come, within the group's session timeout plus a few samples."""
    group = stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))

    def sample() -> GroupLag:
        [lag] = asyncio.run(collect_lag(bootstrap, settings, [group]))
        return lag

    def caught_up() -> bool:
        lag = sample()
        return lag.lag_messages == 0 and sum(p.committed or 0 for p in lag.partitions) == 8

    with WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
        _discover(bootstrap, settings, first=1, count=8)
        wait_until(caught_up, 60, "the worker to commit the first discoveries")
        live = [sample() for _ in range(3)]
        assert [(lag.status, lag.members) for lag in live] == [("OK", 1)] * 3
        # Measuring never disturbed the live member: it joined once and was never rebalanced.
        assert worker.log().count(f"Joined group '{group}'") == 1, worker.log()[-3000:]
        assert worker.stop() == 0

    _discover(bootstrap, settings, first=100, count=8)
    bound = settings.broker.session_timeout_s + 15
    deadline = time.monotonic() + bound
    while (stop := sample()).status != "STOP":
        assert time.monotonic() < deadline, f"not STOP {bound:.0f}s after the worker left: {stop}"
        time.sleep(0.5)
    assert stop.members == 0 and stop.state == "Empty"
    # Every new discovery is owed, also on partitions the group never committed on before.
    assert stop.lag_messages == 8
    assert {p.status for p in stop.partitions if p.lag_messages} == {"STOP"}


def test_a_group_nobody_knows_is_bad_usage(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo exits 2 naming our groups, rather than print "(no committed offsets)"."""
    asyncio.run(ensure_topics(bootstrap, settings))
    ours = stage_group(settings.worker.app_id, "features")
    assert main(["lag", "--group", ours + "x"]) == 2
    err = capsys.readouterr().err
    assert f"{ours + 'x'!r}" in err and ours in err and "--group" in err, err
    assert main(["lag", "--group", ours]) == 0  # ours, though it has not committed yet
    assert "(no committed offsets)" in capsys.readouterr().out
